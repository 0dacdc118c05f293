"""Regular controls, each written as a DFA only: the class counts paths through it to sample uniformly by length.

To add a regular language, subclass DFALanguage with `transitions` (state -> {symbol: next state}), `start` and
`accepting`. A missing transition goes to an implicit rejecting sink. State names may be any hashable values.
"""

from typing import ClassVar

import numpy as np

from languages.base import Language, PluginError, register
from languages.uniform_sampling import uniform_below


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
    """Binary strings with an odd number of 1s."""

    name = "parity"
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
    alphabet = "01"
    transitions = {"start": {"0": "no", "1": "yes"}, "yes": {"0": "yes", "1": "yes"}, "no": {"0": "no", "1": "no"}}
    start = "start"
    accepting = {"yes"}


@register
class ABStar(DFALanguage):
    """(ab)*: zero or more repetitions of ab."""

    name = "ab_star"
    alphabet = "ab"
    transitions = {"even": {"a": "odd"}, "odd": {"b": "even"}}
    start = "even"
    accepting = {"even"}


@register
class AAStar(DFALanguage):
    """(aa)*: strings of a of even length."""

    name = "aa_star"
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
    alphabet = "01"
    transitions = {"ones": {"1": "ones"}}
    start = "ones"
    accepting = {"ones"}
    decided_by = frozenset({"counts"})  # a member is a string with no 0


@register
class Tomita2(DFALanguage):
    """Tomita 2: (10)*."""

    name = "tomita2"
    alphabet = "01"
    transitions = {"even": {"1": "odd"}, "odd": {"0": "even"}}
    start = "even"
    accepting = {"even"}


@register
class Tomita3(DFALanguage):
    """Tomita 3: no maximal run of 1s of odd length followed, anywhere later, by a maximal run of 0s of odd length."""

    name = "tomita3"
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
    alphabet = "01"
    transitions = {0: {"0": 1, "1": 0}, 1: {"0": 2, "1": 0}, 2: {"1": 0}}  # state: trailing 0s
    start = 0
    accepting = {0, 1, 2}


@register
class Tomita5(DFALanguage):
    """Tomita 5: an even number of 0s and an even number of 1s."""

    name = "tomita5"
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
    alphabet = "01"
    transitions = {1: {"0": 1, "1": 2}, 2: {"1": 2, "0": 3}, 3: {"0": 3, "1": 4}, 4: {"1": 4}}  # state: block
    start = 1
    accepting = {1, 2, 3, 4}
