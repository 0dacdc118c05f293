"""Context-free languages of FLaRe (Butoi et al. 2025): marked reversal, unmarked reversal and stack manipulation.

Also the base of FLaRe's "w # f(w)" languages (`MarkedTransduction`): a word w, a marker #, and a word computed
from w of the same length. The context-sensitive ones (copy, odds first, bucket sort) build on it in
languages/context_sensitive.py.

Every sampler here is exactly uniform over the members of the requested length. A marked or unmarked reversal is one
uniform word w. A stack-manipulation string is one (initial stack, operation sequence) pair; its length is
2k + 3p + 1 for k initial symbols and p pushes, whatever the number of pops, so (k, p) is drawn with the exact number
of members it has, then the number of pops, then the interleaving of pushes and pops by unranking a uniform rank
among the sequences that never pop an empty stack (ballot counts).
"""

import math
from functools import cache
from typing import ClassVar

import numpy as np

from satbench.languages.base import Language, random_string, register
from satbench.languages.uniform_sampling import choose_weighted, random_index, uniform_below


def flip(bit: str) -> str:
    return "1" if bit == "0" else "0"


def swap_two_different(rng: np.random.Generator, s: str) -> str | None:
    """s with two of its symbols that differ swapped (same counts, different string); None if all symbols agree."""
    if len(set(s)) < 2:
        return None
    i = random_index(rng, len(s))
    others = [j for j, c in enumerate(s) if c != s[i]]
    j = others[random_index(rng, len(others))]
    i, j = min(i, j), max(i, j)
    return s[:i] + s[j] + s[i + 1:j] + s[i] + s[j + 1:]


class MarkedTransduction(Language):
    """Base of FLaRe's w # f(w) languages: w over `letters`, one # (FLaRe's marker), then f(w), of w's length.

    A subclass sets `name`, `family`, `letters` (the alphabet is letters + "#"), writes `transform` (f) and
    `wrong_outputs` (outputs a model might confuse with f(w), for near misses). Members have odd length 2k + 1 and
    number |letters|^k; sampling draws w uniformly, which is exactly uniform since w determines the member.
    """

    letters: ClassVar[str] = "01"

    def transform(self, w: str) -> str:
        raise NotImplementedError

    def wrong_outputs(self, w: str) -> list[str]:
        return []

    def accepts(self, s: str) -> bool:
        w, mark, out = s.partition("#")
        return bool(mark) and len(out) == len(w) and set(w) <= set(self.letters) and out == self.transform(w)

    def count(self, n: int) -> int:
        return len(self.letters) ** (n // 2) if n % 2 else 0

    def sample(self, rng, n):
        if n % 2 == 0:
            return None
        w = random_string(rng, n // 2, self.letters)
        return w + "#" + self.transform(w)

    def near_misses(self, rng, s):
        w, _, out = s.partition("#")
        k = len(w)
        if k == 0:
            return []
        misses = [w + "#" + wrong for wrong in self.wrong_outputs(w)]
        # One output symbol wrong (for a reversal: one mismatched pair), and two different output symbols swapped
        # (the counts of a member, the order wrong).
        i = random_index(rng, k)
        others = self.letters.replace(out[i], "")
        misses.append(w + "#" + out[:i] + others[random_index(rng, len(others))] + out[i + 1:])
        swapped = swap_two_different(rng, out)
        if swapped is not None:
            misses.append(w + "#" + swapped)
        # The marker one place early: the right symbols, the wrong split.
        misses.append(w[:-1] + "#" + w[-1] + out)
        return misses

    def prefix_accepts(self, s):
        # A member prefix has its only # in the middle, so only s[:2p + 1] can be one, p the first # of s.
        out = [False] * (len(s) + 1)
        p = s.find("#")
        if 0 <= p and 2 * p + 1 <= len(s):
            out[2 * p + 1] = self.accepts(s[:2 * p + 1])
        return out

    def next_symbols(self, s):
        # Before the marker any letter or the marker may follow; after it, the one symbol f(w) has next.
        out, w, target = [], None, None
        letters = set(self.letters)
        for i in range(len(s) + 1):
            if target is None:
                out.append(self.alphabet)
            else:
                j = i - len(w) - 1
                out.append(target[j] if j < len(target) else "")
            if i == len(s) or out[-1] == "":
                continue
            c = s[i]
            if target is None and c == "#":
                w = s[:i]
                target = self.transform(w)
            elif (target is None and c not in letters) or (target is not None and c != out[-1]):
                return out + [""] * (len(s) - i)
        return out


@register
class MarkedReversal(MarkedTransduction):
    """w#w^R: a binary word w, the marker #, and w reversed."""

    name = "marked_reversal"
    family = "context-free"
    alphabet = "01#"
    sources = ("butoi2025",)

    def transform(self, w):
        return w[::-1]

    def wrong_outputs(self, w):
        return [w]  # copied instead of reversed (a member only when w is a palindrome; the sampler drops those)


@register
class UnmarkedReversal(Language):
    """ww^R: a binary word w and w reversed, i.e. the binary palindromes of even length (the empty one included).

    Sampling is exactly uniform: the first half is a uniform word and determines the member.
    """

    name = "unmarked_reversal"
    family = "context-free"
    alphabet = "01"
    sources = ("butoi2025",)

    def accepts(self, s: str) -> bool:
        return len(s) % 2 == 0 and set(s) <= {"0", "1"} and s == s[::-1]

    def count(self, n: int) -> int:
        return 2 ** (n // 2) if n % 2 == 0 else 0

    def sample(self, rng, n):
        if n % 2:
            return None
        w = random_string(rng, n // 2, "01")
        return w + w[::-1]

    def near_misses(self, rng, s):
        # One mismatched pair (a bit of the second half flipped), and two different bits of the first half swapped:
        # the counts of a member, two mismatched pairs.
        k = len(s) // 2
        if k == 0:
            return []
        i = k + random_index(rng, k)
        misses = [s[:i] + flip(s[i]) + s[i + 1:]]
        swapped = swap_two_different(rng, s[:k])
        if swapped is not None:
            misses.append(swapped + s[k:])
        return misses

    def prefix_accepts(self, s):
        return [self.accepts(s[:i]) for i in range(len(s) + 1)]

    def next_symbols(self, s):
        # Every binary word u begins the member u u^R, so both bits follow any binary prefix.
        live = next((i for i, c in enumerate(s) if c not in "01"), len(s))
        return ["01"] * (live + 1) + [""] * (len(s) - live)


# ---- stack manipulation -----------------------------------------------------------------------------------------

PUSH, POP = "+", "-"


def comb(n: int, r: int) -> int:
    return math.comb(n, r) if 0 <= r <= n else 0


def pop_safe(height: int, pushes: int, pops: int) -> int:
    """Orders of `pushes` pushes and `pops` pops that never pop an empty stack, from a stack of `height` symbols.

    Reflection: all orders minus those that reach -1, which map one to one onto orders with pops - height - 1 pops.
    """
    if height < 0:
        return 0
    return comb(pushes + pops, pops) - comb(pushes + pops, pops - height - 1)


@cache
def stack_shapes(n: int) -> tuple[list[tuple[int, int]], list[int]]:
    """The (k initial symbols, p pushes) with 2k + 3p + 1 = n, and the members of length n each has.

    A member is 2^k initial stacks times 2^p pushed bits times the safe orders of p pushes and any q <= k + p pops;
    summed over q (hockey stick) those are C(2p + k + 1, k + p) - C(2p + k + 1, p - 1).
    """
    shapes = [(k, p) for p in range((n - 1) // 3 + 1) for k in [(n - 1 - 3 * p) // 2] if 2 * k + 3 * p + 1 == n]
    weights = [2 ** (k + p) * (comb(2 * p + k + 1, k + p) - comb(2 * p + k + 1, p - 1)) for k, p in shapes]
    return shapes, weights


def run_stack(head: str) -> tuple[list[int], dict[int, str | None]]:
    """Run the initial stack and operations of a member: the positions in head of the symbols left on the stack
    (bottom first), and for each push (by its position) the symbol it goes on top of (None on an empty stack)."""
    stack, under = [], {}
    i = 0
    while i < len(head):
        if head[i] == PUSH:
            under[i] = head[stack[-1]] if stack else None
            stack.append(i + 1)
            i += 2
        elif head[i] == POP:
            stack.pop()
            i += 1
        else:
            stack.append(i)
            i += 1
    return stack, under


@register
class StackManipulation(Language):
    """A binary stack (bottom first), operations +b (push b) and - (pop), #, the final stack (top first).

    FLaRe's symbols PUSH and POP are written + and -, so "01+1-#10" starts from the stack 0 1 (1 on top), pushes 1
    and pops it, and ends with 1 on top of 0. A pop of an empty stack rejects the string.

    Sampling is exactly uniform: (k initial symbols, p pushes), then the number of pops, with their exact member
    counts, then a uniform safe order of pushes and pops (unranked with ballot counts) and uniform bits.
    FLaRe's own sampler draws the operations one at a time, so it is not uniform over members of a length.
    """

    name = "stack_manipulation"
    family = "context-free"
    alphabet = "01+-#"
    sources = ("butoi2025",)

    def accepts(self, s: str) -> bool:
        return self._scan(s)[0][-1]

    def count(self, n: int) -> int:
        return sum(stack_shapes(n)[1])

    def sample(self, rng, n):
        shapes, weights = stack_shapes(n)
        if not sum(weights):
            return None
        k, p = shapes[choose_weighted(rng, weights)]
        q = choose_weighted(rng, [pop_safe(k, p, q) for q in range(k + p + 1)])
        initial = random_string(rng, k, "01")
        pushed = iter(random_string(rng, p, "01"))
        stack, ops = list(initial), []
        rank = uniform_below(rng, pop_safe(k, p, q))
        pushes, pops = p, q
        while pushes or pops:
            with_push = pop_safe(len(stack) + 1, pushes - 1, pops) if pushes else 0
            if rank < with_push:
                stack.append(next(pushed))
                ops.append(PUSH + stack[-1])
                pushes -= 1
            else:
                rank -= with_push
                stack.pop()
                ops.append(POP)
                pops -= 1
        return initial + "".join(ops) + "#" + "".join(reversed(stack))

    def near_misses(self, rng, s):
        head, _, out = s.rpartition("#")
        survivors, under = run_stack(head)
        misses = []
        if out:
            # The final stack with one symbol wrong, or with two different symbols swapped.
            i = random_index(rng, len(out))
            misses.append(head + "#" + out[:i] + flip(out[i]) + out[i + 1:])
            swapped = swap_two_different(rng, out)
            if swapped is not None:
                misses += [head + "#" + swapped, head + "#" + out[::-1]]  # also read bottom first
            # A symbol that stays on the stack written differently in the first part: the output no longer matches.
            i = survivors[random_index(rng, len(survivors))]
            misses.append(head[:i] + flip(head[i]) + head[i + 1:] + "#" + out)
        pairs = [i for i in range(len(head) - 2) if head[i] == PUSH and head[i + 2] == POP and under[i] != head[i + 1]]
        if pairs:
            # A push and the pop after it done the other way round: the pop removes a different symbol from the one
            # pushed, or finds the stack empty. The counts stay those of a member.
            i = pairs[random_index(rng, len(pairs))]
            misses.append(head[:i] + POP + head[i:i + 2] + head[i + 3:] + "#" + out)
        if head:
            # The marker one place early: the last operation (or stack symbol) read as output.
            misses.append(head[:-1] + "#" + head[-1] + out)
        return misses

    def prefix_accepts(self, s):
        return self._scan(s)[0]

    def next_symbols(self, s):
        return self._scan(s)[1]

    def _scan(self, s):
        """(is a member, the symbols that can follow) for every prefix s[:i], i = 0..len(s), in one pass."""
        accepted, follows = [], []
        stack, phase, expected, j = [], "stack", "", 0
        for i in range(len(s) + 1):
            pop = POP if stack else ""
            accepted.append(phase == "out" and j == len(expected))
            follows.append({"stack": "01" + PUSH + pop + "#", "ops": PUSH + pop + "#", "push": "01",
                            "out": expected[j:j + 1], "dead": ""}[phase])
            if i == len(s) or phase == "dead":
                continue
            c = s[i]
            if phase == "out":
                j, phase = (j + 1, "out") if expected[j:j + 1] == c else (j, "dead")
            elif phase == "push":
                phase = "ops" if c in "01" else "dead"
                stack.append(c)  # (a dead scan never reads the stack again)
            elif c in "01" and phase == "stack":
                stack.append(c)
            elif c == PUSH:
                phase = "push"
            elif c == POP and stack:
                stack.pop()
                phase = "ops"
            elif c == "#":
                phase, expected = "out", "".join(reversed(stack))
            else:
                phase = "dead"
        return accepted, follows
