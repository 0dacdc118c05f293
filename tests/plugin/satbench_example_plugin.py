"""An example satbench language plugin: palindromes over {a, b}."""

from satbench.languages import Language, register
from satbench.languages.base import COUNTS_BOUNDS


@register
class Palindrome(Language):
    """Strings over {a, b} that read the same backwards."""

    name = "palindrome"
    family = "context-free"
    alphabet = "ab"
    shortcut_bounds = COUNTS_BOUNDS

    def accepts(self, s):
        return set(s) <= {"a", "b"} and s == s[::-1]

    def count(self, n):
        return 2 ** ((n + 1) // 2)

    def sample(self, rng, n):
        # A palindrome is fixed by its first ceil(n/2) symbols, so drawing those uniformly is exactly uniform.
        half = "".join(rng.choice(["a", "b"], size=(n + 1) // 2))
        return half + half[: n // 2][::-1]

    def near_misses(self, rng, s):
        # One symbol of the first half changed: a single mismatched pair, the counts almost those of a member.
        if len(s) < 2:
            return []
        i = int(rng.integers(len(s) // 2))
        return [s[:i] + ("b" if s[i] == "a" else "a") + s[i + 1:]]
