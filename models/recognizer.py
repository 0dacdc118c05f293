"""The recognizer: a small transformer that reads BOS + a string and says whether the string is in the language.

Read top to bottom: the config, the positional encodings, the MLP, one block, the recognizer. The attention layer and
its variants live in models/attention.py.

Input convention: a (B, T) LongTensor with BOS in column 0, the string's symbols after it and PAD (= 0) after the
string. Padding is derived from `tokens == PAD`; nothing else needs to be passed.

Member axis. Every layer computes on tensors with a leading member axis M: x is (M, B, T, d). A standalone model is
the case M = 1 with ordinary parameters; a stacked ensemble (models/ensemble.py) is the same module with a member axis
in front of every parameter, so that one pass runs M models with batched matmuls (`linear`), one layer norm over the
stacked tensor (`norm`) and the members folded into the batch of the attention. Both run this one code path, which is
why member i of an ensemble computes what the standalone model with its parameters computes, up to rounding: batched
kernels round differently, and a stacked pre-LN block folds its norms' affine into the maps that read them
(`models.layers.norm_linear`), where a standalone model's fused norm applies it.
"""

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from satbench.languages.base import EOS, PAD  # the reserved token ids, defined once with the alphabet's encoding
from satbench.models.attention import SURROGATES, VARIANTS, KeyMask, SelfAttention
from satbench.models.layers import embed, linear, norm, norm_linear, stacked

POSITIONALS = ("none", "sinusoidal", "learned", "fraction")
LAYER_NORMS = ("pre", "post", "branch", "none")
KINDS = ("transformer", "lstm", "rnn")  # built in (models/kinds.py); plugins add their own
AUX_HEADS = ("lm", "next_symbols")  # the auxiliary heads, and the train.aux_losses that read them


def aux_names(key, names) -> list[str]:
    """`names` as a list, if they are distinct names of AUX_HEADS."""
    names = list(names)
    if not set(names) <= set(AUX_HEADS) or len(set(names)) != len(names):
        raise ValueError(f"{key}: {names} must be distinct names of {', '.join(AUX_HEADS)}")
    return names


@dataclass
class ModelConfig:
    vocab_size: int
    # transformer: this file's Recognizer, with model.attention; lstm, rnn: the recurrent baselines of
    # models/recurrent.py (d_model units per layer), for which the attention fields mean nothing; or the name of a
    # plugin's model (models/kinds.py).
    kind: str = "transformer"
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 64
    attention: str = "soft"  # one of VARIANTS (models/attention.py): soft | saturated | hard, and any registered
    surrogate: str = "ste"  # one of SURROGATES: how the exact variants train (ignored for the others)
    anneal_max: float = 30.0  # final inverse temperature of `anneal`: at 30 a key 0.25 below the best keeps < 1e-3
    tol: float = 1e-5  # saturated/hard tie tolerance: s ties when s >= max - tol * (the row's largest |s|)
    tolerant_tol: float = 0.1  # the same for the exact variants of a `tolerant` model, in training and evaluation
    positional: str = "sinusoidal"  # none | sinusoidal | learned | fraction (i/n)
    layer_norm: str = "pre"  # pre | post | branch (x + LN(f(x)), homogeneous without biases) | none
    causal: bool = True
    bias: bool = True  # False makes every linear map and layer norm bias-free (homogeneity)
    max_len: int = 1024  # longest input (BOS included) a `learned` positional encoding covers
    # The next-symbol task's head: a logit per token id at every position, whose EOS column is the membership logit.
    next_symbols: bool = False
    # Every parameter the norm counts (`counts_toward_norm`: layer-norm gains included, embeddings not) is multiplied
    # by init_scale right after PyTorch's initialisation, so the norm at init is exactly init_scale times the default
    # and a norm-growth run can start small enough to grow several-fold. Embeddings keep their scale so the input to
    # the first block is the same at any init_scale.
    init_scale: float = 1.0
    # Queries and keys normalised to unit length per head before their dot product, so that a score is
    # attention_scale * cos(q, k), in [-attention_scale, attention_scale]: training can turn where a head looks but not
    # how sharply, since growing W_q or W_k no longer grows the scores (nor does saturate(model, c)). Only the sweep's c
    # (scale_attention) and the saturated limit sharpen such a model.
    qk_norm: bool = False
    # The fixed inverse temperature of qk_norm. Unset, it is sqrt(d_model / n_heads): the usual q.k / sqrt(head_dim)
    # of a q and k of length sqrt(head_dim), which layer-normed vectors have, so the scores start on the scale of the
    # default model's. Resolved in __post_init__, so that a cell's record holds the number that acted. Without
    # qk_norm the scale is 1 / sqrt(head_dim) and this field must stay unset.
    attention_scale: float | None = None
    # Heads of train.aux_losses (filled in by the harness): "lm", a logit per token id for the next token (EOS after
    # the last symbol), and "next_symbols", a logit per token id that it can follow, both at every position.
    aux_heads: list[str] = field(default_factory=list)
    # BOS as a key every causal query may attend to (true), or only BOS's own position (false): then position i reads
    # s[:i] alone, the view of Bhattamishra et al. (2020), whose input has no start symbol. Strings of length >= 1.
    bos_key: bool = True

    def __post_init__(self):
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError(f"model.kind: {self.kind!r} is not a name such as {', '.join(KINDS)}")
        for name, choices in (
            ("attention", VARIANTS),
            ("surrogate", SURROGATES),
            ("positional", POSITIONALS),
            ("layer_norm", LAYER_NORMS),
        ):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"model.{name}: {value!r} is not one of {', '.join(choices)}")
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name}: {value!r} is not a positive integer")
        if self.vocab_size <= EOS:
            raise ValueError(f"model.vocab_size: {self.vocab_size} leaves no symbols after PAD, BOS and EOS (ids 0-2)")
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model: {self.d_model} is not divisible by model.n_heads = {self.n_heads}")
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"model.d_model: {self.d_model} must be even for sinusoidal positions")
        for name, low in (("anneal_max", 1.0), ("tol", 0.0), ("tolerant_tol", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < low:
                raise ValueError(f"model.{name}: {value!r} is not a finite number >= {low:g}")
        value = self.init_scale
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"model.init_scale: {value!r} is not a finite number > 0")
        for name in ("causal", "bias", "next_symbols", "qk_norm", "bos_key"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model.{name}: {getattr(self, name)!r} is not true or false")
        if not self.bos_key and not self.causal:
            raise ValueError("model.bos_key: false hides BOS from the queries of a causal model; a bidirectional one "
                             "reads its membership at BOS")
        self.aux_heads = aux_names("model.aux_heads", self.aux_heads)
        value = self.attention_scale
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"model.attention_scale: {value!r} is not a finite number > 0")
            if not self.qk_norm:
                raise ValueError(f"model.attention_scale: {value!r} is set but model.qk_norm is false; it scales "
                                 "only normalised scores (without qk_norm the scale is 1 / sqrt(head_dim))")
            self.attention_scale = float(value)
        elif self.qk_norm:
            self.attention_scale = math.sqrt(self.d_model // self.n_heads)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Build from a plain dict (JSON, YAML), rejecting unknown fields with one line."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ValueError(f"model.{key}: unknown field (known: {', '.join(sorted(known))})")
        if "vocab_size" not in values:
            raise ValueError("model.vocab_size: missing")
        return cls(**values)


def sinusoidal_table(n_positions: int, d_model: int, device=None) -> torch.Tensor:
    """The (n_positions, d_model) table of Vaswani et al.: sin and cos of position / 10000^(2k/d)."""
    position = torch.arange(n_positions, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device=device) * (-math.log(1e4) / d_model))
    table = torch.zeros(n_positions, d_model, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class PositionalEncoding(nn.Module):
    """Adds position information to the token embeddings, by `config.positional`:

    none        nothing (a causal model can still recover 1/(i+1) by attending uniformly to BOS)
    sinusoidal  the fixed table of Vaswani et al.; no parameters, any length
    learned     a trained embedding per position, up to `max_len`
    fraction    i/n, where i is the column (BOS = 0) and n the string's length, mapped into the residual stream by a
                trained (1 -> d_model) vector. n is the whole string's length, so for a causal model a prefix logit
                sees the length of the string it belongs to, not only its prefix.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.kind = config.positional
        self.max_len = config.max_len
        if self.kind == "sinusoidal":
            # Not persistent: recomputed from the config, so checkpoints hold parameters only.
            self.register_buffer("table", sinusoidal_table(config.max_len, config.d_model), persistent=False)
        elif self.kind == "learned":
            self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        elif self.kind == "fraction":
            self.position_embedding = nn.Linear(1, config.d_model, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """For tokens (M, B, T): None, or a tensor that broadcasts against the (M, B, T, d) embeddings."""
        T = tokens.shape[-1]
        if self.kind == "none":
            return None
        if self.kind == "sinusoidal":
            table = self.table if T <= self.table.shape[0] else sinusoidal_table(T, self.table.shape[1], tokens.device)
            return table[:T]
        if self.kind == "learned":
            if T > self.max_len:
                raise ValueError(f"input length {T} exceeds model.max_len = {self.max_len} (learned positions)")
            return stacked(self.position_embedding.weight, 2)[:, None, :T]  # (M, 1, T, d)
        length = ((tokens != PAD).sum(dim=-1, keepdim=True) - 1).clamp(min=1)  # symbols after BOS
        column = torch.arange(T, device=tokens.device)
        fraction = (column / length).unsqueeze(-1).to(self.position_embedding.weight.dtype)  # (M, B, T, 1)
        return linear(self.position_embedding, fraction)


class MLP(nn.Module):
    """Position-wise feed-forward layer. ReLU keeps the model positively homogeneous when biases are off, and lets
    hand-built constructions compute exact piecewise-linear functions."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)

    def forward(self, x, ln=None):
        """With a layer norm `ln` (a pre-LN block's), the layer reads ln(x)."""
        return linear(self.proj, F.relu(norm_linear(ln, self.fc, x)))


def layer_norm(config: ModelConfig) -> nn.Module:
    if config.layer_norm == "none":
        return nn.Identity()
    return nn.LayerNorm(config.d_model, bias=config.bias)


class Block(nn.Module):
    """Attention then MLP, each in a residual branch, with layer norm in one of four places:

        pre     x + f(LN(x))     the GPT-2 block; the stream is normalised once more before the head
        post    LN(x + f(x))     the original transformer
        branch  x + LN(f(x))     the block of Merrill et al. (2021), homogeneous without biases (see below)
        none    x + f(x)

    Why `branch` with `bias=False` turns parameter scaling into a temperature sweep. Multiply every parameter by c and
    suppose the block's input is c times what it was (true for the embeddings; positions must be none, learned or
    fraction, since a fixed sinusoidal table does not scale). Then q, k and v are each c^2 times larger, the scores
    q.k c^4 times larger, so the attention weights are those of scores * c^4, and the head's output (after the
    projection, c^3 times the output at scores * c^4) is normalised away by LN, whose gain gives back a factor c. The
    MLP's output is c^3 times as large (ReLU is positively homogeneous) and again LN leaves c times the normalised
    output. So the block's output is c times the output of the original block with attention logits * c^4, and by
    induction over the blocks the final stream is too; the head's layer norm and the linear head make the logit c^2
    times the logit of the original model with every attention logit multiplied by c^4:

        f(x; c * theta) = c^2 * f_{logits * c^4}(x; theta),  so sign and decisions agree with scale_attention(c^4).

    Up to LN's epsilon (1e-5 added to a variance that grows as c^6). With pre- or post-LN, or with biases, scaling the
    parameters changes the function in other ways too (a bias scales by c, not by c^k; LN(x) in pre-LN cancels the
    growth of the stream, so the attention scores scale by c^2 while the residual branch grows by c^3).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.placement = config.layer_norm
        self.ln_1 = layer_norm(config)
        self.attn = SelfAttention(config)
        self.ln_2 = layer_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, keys, need_weights=False, rows=None):
        """x (M, B, T, d) -> (M, B, T, d); with `rows` (M, B), the output at that one position of each string only,
        (M, B, 1, d), its query attending under the mask `keys` (see Recognizer._membership_logit)."""
        stream = x if rows is None else x.gather(2, rows[..., None, None].expand(*rows.shape, 1, x.shape[-1]))
        if self.placement == "post":
            a, internals = self.attn(x, keys, need_weights, rows=rows)
            x = norm(self.ln_1, stream + a)
            x = norm(self.ln_2, x + self.mlp(x))
        elif self.placement == "branch":
            a, internals = self.attn(x, keys, need_weights, rows=rows)
            x = stream + norm(self.ln_1, a)
            x = x + norm(self.ln_2, self.mlp(x))
        else:  # pre, or none (whose norms are the identity); each layer norms its input itself (layers.norm_linear)
            a, internals = self.attn(x, keys, need_weights, ln=self.ln_1, rows=rows)
            x = stream + a
            x = x + self.mlp(x, ln=self.ln_2)
        return x, internals


class Recognizer(nn.Module):
    """A transformer that maps BOS + string (+ PAD) to a membership logit.

    forward(tokens (B, T), internals=False, logit_only=False) returns
        "logit"          (B,)   membership logit: read at the last real position for a causal model, at BOS (column 0)
                                for a bidirectional one
        "prefix_logits"  (B, T) a logit per position; for a causal model position i sees BOS + s[:i], so it is the
                                logit of the prefix of length i. 0 at PAD positions.
        "next_logits"    (B, T, vocab) with config.next_symbols: at position i, a logit per token id that it can
                                follow s[:i] (EOS: s[:i] is a member, which is also "prefix_logits"). 0 at PAD.
        "lm_logits", "aux_next_logits"  (B, T, vocab) with config.aux_heads: the next token's logits and the
                                next-symbol logits of train.aux_losses, beside the membership head
    and with internals=True also
        "hidden"         (L+1, B, T, d) residual stream after the embedding and after each block
        "attn"           (L, B, H, T, T) attention weights actually used in this pass
        "scores"         (L, B, H, T, T) attention scores q.k / sqrt(d_head) (with model.qk_norm, attention_scale *
                                cos(q, k)) before any scale c, -inf on keys a query may not see
        "values"         (L, B, H, T, d_head) the values the weights average
    and with logit_only=True only "logit", computed without what it does not read (`_membership_logit`): the pass
    that training and evaluation on membership labels take.

    model.train(): saturated and hard attention run their surrogate (config.surrogate); model.eval(): exact weights.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.positions = PositionalEncoding(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layers)])
        # Pre-norm and branch-norm leave the residual stream unnormalised, so it gets a final norm; post-norm ends
        # normalised.
        self.ln_f = layer_norm(config) if config.layer_norm in ("pre", "branch") else nn.Identity()
        self.head, self.lm_head, self.next_head = output_heads(config)
        scale_counted_parameters(self, config.init_scale)

    def attention_layers(self) -> list[SelfAttention]:
        return [block.attn for block in self.blocks]

    def set_inverse_temperature(self, beta: float) -> None:
        """Inverse temperature of the `anneal` surrogate, for every attention layer (no effect on soft attention or
        in eval mode). See models.attention.annealed_inverse_temperature for the schedule."""
        for layer in self.attention_layers():
            layer.inverse_temperature.fill_(float(beta))

    def set_tie_tolerance(self, tol: float) -> None:
        """The relative tie tolerance of every exact attention layer (train.tolerance_schedule sets it step by step)."""
        for layer in self.attention_layers():
            if layer.weighting.exact:
                layer.tol = float(tol)

    def set_soft_phase(self, on: bool) -> None:
        """Every attention layer computes softmax attention while `on` (train.soft_steps), its own variant after."""
        for layer in self.attention_layers():
            layer.soft_phase = bool(on)

    def forward(self, tokens: torch.Tensor, internals: bool = False,
                logit_only: bool = False) -> dict[str, torch.Tensor]:
        if self.token_embedding.weight.dim() == 3:  # stacked parameters: tokens (M, B, T), outputs (M, ...)
            return self.forward_members(tokens, internals, logit_only)
        return {key: value[0] for key, value in self.forward_members(tokens[None], internals, logit_only).items()}

    def forward_members(self, tokens: torch.Tensor, internals: bool = False,
                        logit_only: bool = False) -> dict[str, torch.Tensor]:
        """forward() for tokens (M, B, T), one batch per member; every output has the member axis in front.

        logit_only: only "logit", for training and evaluating on membership labels, computed without the positions it
        does not read (see `_membership_logit`). A row of padding alone then gets the head's logit at column 0 rather
        than 0.
        """
        if logit_only and internals:
            raise ValueError("Recognizer.forward: logit_only leaves out the internals that internals=True asks for")
        M, B, T = tokens.shape
        padding = tokens == PAD  # (M, B, T)

        # The attention folds the members into its batch.
        keys = KeyMask(padding.flatten(0, 1), self.config.causal, self.config.bos_key)

        x = embed(self.token_embedding, tokens)  # (M, B, T, d)
        position = self.positions(tokens)
        if position is not None:
            x = x + position

        if logit_only:
            return {"logit": self._membership_logit(x, keys, padding)}

        hidden, layers = [x], []
        for block in self.blocks:
            x, attention = block(x, keys, need_weights=internals)
            hidden.append(x)
            layers.append(attention)

        out = read_heads(self, norm(self.ln_f, x), padding, self.config.causal)
        if internals:
            out["hidden"] = torch.stack(hidden, dim=1)  # (M, L + 1, B, T, d)
            for key in ("attn", "scores", "values"):
                out[key] = torch.stack([layer[key].unflatten(0, (M, B)) for layer in layers], dim=1)
        return out

    def _membership_logit(self, x: torch.Tensor, keys: KeyMask, padding: torch.Tensor) -> torch.Tensor:
        """The membership logit alone, (M, B), from the embedded input x (M, B, T, d). The last block answers only the
        query the logit is read at (a causal model's last real position, a bidirectional one's BOS), which sees every
        real key, so that block's MLP, the final norm and the head run on one position per string; the logit and its
        gradient are the full pass's, up to the rounding of smaller kernels."""
        for block in self.blocks[:-1]:
            x, _ = block(x, keys)
        if self.config.causal:
            rows = logit_position(padding)
        else:
            rows = torch.zeros(padding.shape[:2], dtype=torch.long, device=padding.device)
        x, _ = self.blocks[-1](x, KeyMask(keys.padding, causal=False, bos_key=keys.bos_key), rows=rows)  # (M, B, 1, d)
        head = linear(self.head, norm(self.ln_f, x)).flatten(2)  # (M, B, outputs)
        return head[..., EOS] if self.config.next_symbols else head.squeeze(-1)


def output_heads(config: ModelConfig):
    """(head, lm_head, next_head) of any model kind: the membership head (a logit per token id for the next-symbol
    task), and the heads of FLaRe's auxiliary losses (train.aux_losses) where config.aux_heads asks for them."""
    head = nn.Linear(config.d_model, config.vocab_size if config.next_symbols else 1, bias=config.bias)
    lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False) if "lm" in config.aux_heads else None
    next_head = nn.Linear(config.d_model, config.vocab_size, bias=config.bias) \
        if "next_symbols" in config.aux_heads else None
    return head, lm_head, next_head


def logit_position(padding: torch.Tensor) -> torch.Tensor:
    """(M, B) column of a causal model's membership logit: the last real position (the padding trails)."""
    return (padding.shape[-1] - 1 - padding.sum(dim=-1)).clamp(min=0)


def read_heads(model: nn.Module, final: torch.Tensor, padding: torch.Tensor, causal: bool) -> dict[str, torch.Tensor]:
    """The outputs of `model`'s heads (`output_heads`) on its final states (M, B, T, d): "logit" (a causal model's at
    the last real position, a bidirectional one's at BOS), "prefix_logits", and "next_logits", "lm_logits",
    "aux_next_logits" where the model has those heads. 0 at PAD."""
    head = linear(model.head, final).masked_fill(padding[..., None], 0.0)  # (M, B, T, outputs)
    prefix_logits = head[..., EOS] if model.config.next_symbols else head.squeeze(-1)  # (M, B, T)
    if causal:
        logit = prefix_logits.gather(-1, logit_position(padding)[..., None]).squeeze(-1)
    else:
        logit = prefix_logits[..., 0]
    out = {"logit": logit, "prefix_logits": prefix_logits}
    if model.config.next_symbols:
        out["next_logits"] = head
    if model.lm_head is not None:
        out["lm_logits"] = linear(model.lm_head, final)
    if model.next_head is not None:
        out["aux_next_logits"] = linear(model.next_head, final)
    return out


@torch.no_grad()
def scale_counted_parameters(model: nn.Module, factor: float) -> None:
    """Multiply the parameters of the norm (`counts_toward_norm`) by `factor`: model.init_scale. Done in a model's
    constructor, so an Ensemble, whose members are built under their own seeds, scales them alike."""
    if factor == 1:
        return
    for name, p in model.named_parameters():
        if p.requires_grad and counts_toward_norm(name, p.shape):
            p.mul_(factor)


def counts_toward_norm(name: str, member_shape: torch.Size) -> bool:
    """The parameter norm's rule (ARCHITECTURE.md, "Words"): trainable non-scalar parameters, embeddings (token,
    learned or fractional positions) excluded, as in the paper's protocol."""
    return len(member_shape) > 0 and "embedding" not in name


@torch.no_grad()
def parameter_norm(model: Recognizer) -> float:
    """l2 norm of the parameters selected by `counts_toward_norm`, in float64."""
    total = 0.0
    for name, p in model.named_parameters():
        if p.requires_grad and counts_toward_norm(name, p.shape):
            total += float(p.double().pow(2).sum())
    return math.sqrt(total)
