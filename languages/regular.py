"""Regular languages, each written as a DFA only: the class counts paths through it to sample uniformly by length.

To add a regular language, subclass DFALanguage with `transitions` (state -> {symbol: next state}), `start` and
`accepting`, or write the same as a YAML file in languages/automata/ (languages/automata.py loads it). A missing
transition goes to an implicit rejecting sink. State names may be any hashable values. The languages here are those
whose automata are generated (bounded-depth Dyck, modular arithmetic) or predate the YAML files.

Sampling is exact: a uniform rank among the accepted strings of length n, unranked with the exact (big-integer) path
counts of the automaton.
"""

import itertools
from typing import ClassVar

import numpy as np

from satbench.languages.base import Language, PluginError, register
from satbench.languages.uniform_sampling import uniform_below


class DFALanguage(Language):
    """A regular language given by a deterministic finite automaton."""

    family = "regular"
    transitions: ClassVar[dict] = {}
    start: ClassVar = None
    accepting: ClassVar[frozenset] = frozenset()
    # No language-specific near misses: edits and shuffles of members are the close negatives of a regular language.
    negative_mixture = {"edit": 0.5, "shuffle": 0.25, "random": 0.25}

    def __init__(self):
        cls = type(self)
        states = list(cls.transitions)
        where = f"language '{cls.name}'"
        if cls.start not in cls.transitions:
            raise PluginError(f"{where}: start state {cls.start!r} has no transitions entry")
        for state, arrows in cls.transitions.items():
            for symbol, target in arrows.items():
                if symbol not in cls.alphabet:
                    raise PluginError(f"{where}: transition {state!r} --{symbol!r}--> uses a symbol outside "
                                      f"the alphabet {cls.alphabet!r}")
                if target not in cls.transitions:
                    raise PluginError(f"{where}: transition {state!r} --{symbol!r}--> goes to {target!r}, "
                                      f"which has no transitions entry")
        missing = set(cls.accepting) - set(states)
        if missing:
            raise PluginError(f"{where}: accepting states {sorted(map(repr, missing))} have no transitions entry")
        index = {state: i for i, state in enumerate(states)}
        sink = len(states)
        # next_state[q][k]: state after symbol k of the alphabet; the sink loops on itself.
        self.next_state = [[index[cls.transitions[s][c]] if c in cls.transitions[s] else sink for c in cls.alphabet]
                           for s in states] + [[sink] * len(cls.alphabet)]
        self.arrows = [{c: self.next_state[q][k] for k, c in enumerate(cls.alphabet)} for q in range(sink + 1)]
        self.is_accepting = [s in cls.accepting for s in states] + [False]
        self.start_index = index[cls.start]
        self.sink = sink
        # paths[m][q]: strings of length m that lead from state q to an accepting state. Grown on demand.
        self.paths = [[int(a) for a in self.is_accepting]]
        # live[q]: some accepting state is reachable from q (a backward search from the accepting states).
        self.live = list(self.is_accepting)
        changed = True
        while changed:
            changed = False
            for q, targets in enumerate(self.next_state):
                if not self.live[q] and any(self.live[t] for t in targets):
                    self.live[q] = changed = True

    def _paths_up_to(self, n):
        while len(self.paths) <= n:
            last = self.paths[-1]
            self.paths.append([sum(last[t] for t in targets) for targets in self.next_state])
        return self.paths

    def run(self, s: str) -> int:
        """The state reached after reading s (the sink on a foreign symbol)."""
        q = self.start_index
        for c in s:
            q = self.arrows[q].get(c, self.sink)
        return q

    def accepts(self, s: str) -> bool:
        return self.is_accepting[self.run(s)]

    def prefix_accepts(self, s: str) -> list[bool]:
        q = self.start_index
        out = [self.is_accepting[q]]
        for c in s:
            q = self.arrows[q].get(c, self.sink)
            out.append(self.is_accepting[q])
        return out

    def next_symbols(self, s: str) -> list[str]:
        q = self.start_index
        out = []
        for i in range(len(s) + 1):
            out.append("".join(c for k, c in enumerate(self.alphabet) if self.live[self.next_state[q][k]]))
            if i < len(s):
                q = self.arrows[q].get(s[i], self.sink)
        return out

    def count(self, n: int) -> int:
        return self._paths_up_to(n)[n][self.start_index]

    def sample(self, rng: np.random.Generator, n: int) -> str | None:
        # Unranking: a uniform rank among the accepted strings of length n, read off symbol by symbol in the
        # alphabet's order using the path counts of what remains.
        paths = self._paths_up_to(n)
        q = self.start_index
        total = paths[n][q]
        if total == 0:
            return None
        rank = uniform_below(rng, total)
        out = []
        for remaining in range(n - 1, -1, -1):
            row = paths[remaining]
            for k, target in enumerate(self.next_state[q]):
                c = row[target]
                if rank < c:
                    out.append(self.alphabet[k])
                    q = target
                    break
                rank -= c
        return "".join(out)


# ---- the regular controls --------------------------------------------------------------------------------------


@register
class Parity(DFALanguage):
    """Binary strings with an odd number of 1s.

    Bhattamishra et al. (2020) call the complement Parity: their generator and labels accept an even number of 1s, the
    empty string included. FLaRe's parity (Butoi et al. 2025) is this one, odd.
    """

    name = "parity"
    sources = ("butoi2025",)  # B20's parity is the complement, crl3
    alphabet = "01"
    transitions = {"even": {"0": "even", "1": "odd"}, "odd": {"0": "odd", "1": "even"}}
    start = "even"
    accepting = {"odd"}
    decided_by = frozenset({"counts"})
    negative_mixture = {"edit": 0.7, "random": 0.3}  # a shuffle never changes the parity


@register
class First(DFALanguage):
    """Binary strings whose first symbol is 1."""

    name = "first"
    sources = ("butoi2025",)
    alphabet = "01"
    transitions = {"start": {"0": "no", "1": "yes"}, "yes": {"0": "yes", "1": "yes"}, "no": {"0": "no", "1": "no"}}
    start = "start"
    accepting = {"yes"}


@register
class ABStar(DFALanguage):
    """(ab)*: zero or more repetitions of ab."""

    name = "ab_star"
    sources = ("bhattamishra2020",)
    alphabet = "ab"
    transitions = {"even": {"a": "odd"}, "odd": {"b": "even"}}
    start = "even"
    accepting = {"even"}


@register
class AAStar(DFALanguage):
    """(aa)*: strings of a of even length."""

    name = "aa_star"
    sources = ("bhattamishra2020",)
    alphabet = "a"
    transitions = {"even": {"a": "odd"}, "odd": {"a": "even"}}
    start = "even"
    accepting = {"even"}
    # One symbol: the length is the whole string, so every shortcut is exact and no length has both labels.
    decided_by = frozenset({"length", "parity", "counts"})
    shortcut_bounds = {}
    negative_mixture = {"random": 1.0}


@register
class Tomita1(DFALanguage):
    """Tomita 1: 1*, strings of 1s only."""

    name = "tomita1"
    sources = ("bhattamishra2020",)
    alphabet = "01"
    transitions = {"ones": {"1": "ones"}}
    start = "ones"
    accepting = {"ones"}
    decided_by = frozenset({"counts"})  # a member is a string with no 0


@register
class Tomita2(DFALanguage):
    """Tomita 2: (10)*."""

    name = "tomita2"
    sources = ("bhattamishra2020",)
    alphabet = "01"
    transitions = {"even": {"1": "odd"}, "odd": {"0": "even"}}
    start = "even"
    accepting = {"even"}


@register
class Tomita3(DFALanguage):
    """Tomita 3: no maximal run of 1s of odd length followed, anywhere later, by a maximal run of 0s of odd length.

    Bhattamishra et al. (2020) use a different DFA for Tomita 3: it rejects only an odd run of 0s that directly
    follows an odd run of 1s. After an odd run of 1s and an even run of 0s, a new run of 1s is counted afresh, so the
    earlier odd run is forgotten once a new run of 1s starts: their language contains this one, and also strings such
    as 100110 (odd 1, even 00, even 11, then odd 0), the shortest difference (1 of length 6, 7 of length 8, 179 of
    length 12). Their next-symbol targets also count the state "inside an odd run of 0s after an odd run of 1s" as
    dead, so after an odd run of 1s they never allow a 0, although 100 is a member of both languages.
    """

    name = "tomita3"
    sources = ("bhattamishra2020",)
    alphabet = "01"
    # clean: no odd run of 1s has ended yet; odd_ones: inside a run of 1s of odd length, none ended before;
    # armed: an odd run of 1s has ended, and the current run (if of 0s) is even; odd_zeros: armed, inside an odd run
    # of 0s, which must not end (by a 1 or by the end of the string).
    transitions = {
        "clean": {"0": "clean", "1": "odd_ones"},
        "odd_ones": {"0": "odd_zeros", "1": "clean"},
        "odd_zeros": {"0": "armed"},
        "armed": {"0": "odd_zeros", "1": "armed"},
    }
    start = "clean"
    accepting = {"clean", "odd_ones", "armed"}


@register
class Tomita4(DFALanguage):
    """Tomita 4: no three consecutive 0s."""

    name = "tomita4"
    sources = ("bhattamishra2020",)
    alphabet = "01"
    transitions = {0: {"0": 1, "1": 0}, 1: {"0": 2, "1": 0}, 2: {"1": 0}}  # state: trailing 0s
    start = 0
    accepting = {0, 1, 2}


@register
class Tomita5(DFALanguage):
    """Tomita 5: an even number of 0s and an even number of 1s."""

    name = "tomita5"
    sources = ("bhattamishra2020",)
    alphabet = "01"
    # state: (number of 0s mod 2, number of 1s mod 2)
    transitions = {(z, o): {"0": (1 - z, o), "1": (z, 1 - o)} for z in (0, 1) for o in (0, 1)}
    start = (0, 0)
    accepting = {(0, 0)}
    decided_by = frozenset({"counts"})
    negative_mixture = {"edit": 0.7, "random": 0.3}  # a shuffle never changes the counts


@register
class Tomita6(DFALanguage):
    """Tomita 6: the number of 0s minus the number of 1s is a multiple of 3."""

    name = "tomita6"
    sources = ("bhattamishra2020",)
    alphabet = "01"
    transitions = {d: {"0": (d + 1) % 3, "1": (d - 1) % 3} for d in range(3)}  # state: (#0 - #1) mod 3
    start = 0
    accepting = {0}
    decided_by = frozenset({"counts"})
    negative_mixture = {"edit": 0.7, "random": 0.3}


@register
class Tomita7(DFALanguage):
    """Tomita 7: 0*1*0*1*."""

    name = "tomita7"
    sources = ("bhattamishra2020",)
    alphabet = "01"
    transitions = {1: {"0": 1, "1": 2}, 2: {"1": 2, "0": 3}, 3: {"0": 3, "1": 4}, 4: {"1": 4}}  # state: block
    start = 1
    accepting = {1, 2, 3, 4}


# ---- the peers' regular languages whose automata are generated --------------------------------------------------


def bounded_dyck(pairs: str, depth: int) -> dict:
    """Transitions of the Dyck language over `pairs` (opening, closing, opening, closing, ...) of nesting depth at most
    `depth`. A state is the stack of open brackets, as a string of opening brackets; a closing bracket must match the
    top one, and an opening bracket beyond `depth` goes to the rejecting sink."""
    openers, closers = pairs[0::2], pairs[1::2]
    transitions = {}
    for size in range(depth + 1):
        for stack in map("".join, itertools.product(openers, repeat=size)):
            arrows = {o: stack + o for o in openers} if size < depth else {}
            if stack:
                arrows[closers[openers.index(stack[-1])]] = stack[:-1]
            transitions[stack] = arrows
    return transitions


@register
class Dyck1Depth12(DFALanguage):
    """D_12: Dyck-1 of nesting depth at most 12, a opening and b closing.

    Bhattamishra et al. (2020) define D_0 = {empty string} and D_n = (a D_(n-1) b)*, and write the brackets as a and
    b; D_12 is the deepest of their star-free variants of Dyck-1 (D_2, D_3 and D_4 are YAML files in
    languages/automata/).
    """

    name = "dyck1_depth12"
    alphabet = "ab"
    transitions = bounded_dyck("ab", 12)
    start = ""
    accepting = {""}
    sources = ("bhattamishra2020",)


@register
class Dyck2Depth3(DFALanguage):
    """Dyck-2 of nesting depth at most 3: balanced ( ) and [ ], never more than 3 brackets open.

    FLaRe's dyck-2-3 (Butoi et al. 2025), whose symbols are written (0 )0 (1 )1; here ( ) and [ ].
    """

    name = "dyck2_depth3"
    alphabet = "()[]"
    transitions = bounded_dyck("()[]", 3)
    start = ""
    accepting = {""}
    sources = ("butoi2025",)


def modular_arithmetic(modulus: int = 5) -> dict:
    """Transitions of d (op d)* = r over the digits below `modulus`: the state holds the value so far (left to right,
    no precedence), then the operator waiting for its right operand, then the value the result digit must equal."""
    digits = [str(d) for d in range(modulus)]
    apply = {"+": lambda x, y: (x + y) % modulus, "-": lambda x, y: (x - y) % modulus,
             "*": lambda x, y: (x * y) % modulus}
    transitions = {"start": {d: ("value", int(d)) for d in digits}, "done": {}}
    for x in range(modulus):
        transitions["value", x] = {**{op: ("pending", x, op) for op in apply}, "=": ("result", x)}
        for op, f in apply.items():
            transitions["pending", x, op] = {d: ("value", f(x, int(d))) for d in digits}
        transitions["result", x] = {str(x): "done"}
    return transitions


@register
class ModularArithmetic(DFALanguage):
    """d (op d)* = r: digits 0-4, ops + - * applied left to right mod 5, r the correct result.

    FLaRe's modular-arithmetic-simple (Butoi et al. 2025): no precedence and no brackets, 1+2*3=4 since (1+2)*3 = 9
    = 4 mod 5; subtraction wraps around (0-1=4). Members have odd lengths from 3 on. Near misses keep the expression
    and change the result digit: telling them apart takes the whole computation.
    """

    name = "modular_arithmetic"
    alphabet = "01234+-*="
    transitions = modular_arithmetic(5)
    start = "start"
    accepting = {"done"}
    sources = ("butoi2025",)
    negative_mixture = {"near_miss": 0.4, "edit": 0.3, "shuffle": 0.1, "random": 0.2}

    def near_misses(self, rng: np.random.Generator, s: str) -> list[str]:
        return [s[:-1] + d for d in "01234" if d != s[-1:]]
