"""An example satbench plugin: a language, palindromes over {a, b}, and a model, the average of the embeddings read."""

import torch

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


class PrefixAverage(torch.nn.Module):
    """An example satbench model plugin: each position's state is the average of the embeddings it has read (a
    uniform causal attention without queries or keys), a ReLU layer and a linear head. A plain module that knows
    nothing of stacked members, as most models are: the harness trains it one member at a time."""

    def __init__(self, config):
        super().__init__()
        self.next_symbols = config.next_symbols
        self.embedding = torch.nn.Embedding(config.vocab_size, config.d_model)
        self.hidden = torch.nn.Linear(config.d_model, config.d_model)
        self.head = torch.nn.Linear(config.d_model, config.vocab_size if config.next_symbols else 1)

    def forward(self, tokens):
        real = (tokens != 0).unsqueeze(-1).float()  # PAD is id 0 and trails the string
        read = torch.cumsum(self.embedding(tokens) * real, dim=1) / torch.cumsum(real, dim=1).clamp(min=1)
        out = self.head(torch.relu(self.hidden(read))) * real
        last = (real.sum(dim=1).long() - 1).clamp(min=0)  # (B, 1): the last real position
        prefix = out[..., 2] if self.next_symbols else out.squeeze(-1)  # EOS (id 2) is the membership bit
        result = {"logit": prefix.gather(1, last).squeeze(1), "prefix_logits": prefix}
        if self.next_symbols:
            result["next_logits"] = out
        return result
