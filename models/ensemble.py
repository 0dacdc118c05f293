"""A stacked ensemble: M Recognizers of one config trained in a single forward pass.

Every parameter carries a leading member axis (M, ...). The forward pass is an ordinary Recognizer's, whose layers
compute on a member axis (models/layers.py): each linear map is one batched matmul over the members, each layer norm one
fused norm over the stacked tensor and one per-member affine, and the attention folds the members into its batch. A
standalone Recognizer runs the same code with M = 1, so member i computes what a standalone Recognizer with member i's
parameters computes, up to the rounding of batched versus single kernels. Member i is initialised exactly like
`Recognizer(config)` built right after `torch.manual_seed(seeds[i])`.

Training, per member:
    loss       sum over members of each member's own mean loss; its gradient with respect to member i's slice is
               member i's own gradient, since no parameter is shared.
    clipping   `models.train.Trainer` clips each member's gradient by that member's norm.
    optimizer  `models.train.Trainer` runs one torch optimizer over the flat (M, P) buffer of all parameters
               (`flatten_parameters`): Adam's moments and update are elementwise, so member i's row evolves as it would
               under its own optimizer (same lr, betas and eps for every member; the step count is shared, which is
               harmless as all members step together). Weight decay is applied by the Trainer, per member.

All members share one config (the attention variant selects Python control flow). Group cells by config; members may
differ in seed and, through their weights, in anything else.
"""

import copy

import torch
from torch import nn
from torch.func import stack_module_state

from satbench.models.kinds import build_model, check_state_dict
from satbench.models.recognizer import ModelConfig, counts_toward_norm


def _replace_parameter(module: nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(owner) if owner else module, leaf, nn.Parameter(value))


def buffer_views(buffer: torch.Tensor, params: list[torch.Tensor], transposed: list[bool]) -> list[torch.Tensor]:
    """Views of an (M, P) buffer shaped like `params`, in order, each a block of columns; a transposed parameter's
    block holds it as (M, in, out)."""
    views, offset = [], 0
    for p, t in zip(params, transposed, strict=True):
        size = p[0].numel()
        block = buffer[:, offset:offset + size]
        views.append(block.view(p.transpose(1, 2).shape).transpose(1, 2) if t else block.view(p.shape))
        offset += size
    return views


class Ensemble(nn.Module):
    """M Recognizers of one config, one per seed. forward(tokens (M, B, T) or (B, T), internals=False,
    logit_only=False) returns Recognizer.forward's dict with a leading member axis on every value."""

    def __init__(self, config: ModelConfig, seeds: list[int]):
        super().__init__()
        if len(seeds) == 0:
            raise ValueError("ensemble.seeds: at least one seed is needed")
        self.config = config
        self.seeds = [int(s) for s in seeds]
        members = []
        for seed in self.seeds:
            # Seed each member on its own, leaving the caller's random stream untouched.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                members.append(build_model(config))
        params, _ = stack_module_state(members)
        # `stacked` is a Recognizer whose parameters have the member axis in front, which makes its forward run all
        # members at once. Being a real submodule, it carries .to(device), train()/eval() and the attention knobs
        # for all members at once.
        self.stacked = copy.deepcopy(members[0])
        for name, value in params.items():
            _replace_parameter(self.stacked, name, value.detach().clone())
        # A plugin's model runs on member i's parameters through torch.func.functional_call of this module, kept in a
        # list so that it is no submodule (its parameters are no ensemble's).
        self._template = [members[0]]

    @property
    def M(self) -> int:
        return len(self.seeds)

    def attention_layers(self):
        return self.stacked.attention_layers() if hasattr(self.stacked, "attention_layers") else []

    def set_inverse_temperature(self, beta: float) -> None:
        """Inverse temperature of the `anneal` surrogate, for every member and layer."""
        if hasattr(self.stacked, "set_inverse_temperature"):  # a plugin's model has no attention knobs
            self.stacked.set_inverse_temperature(beta)

    def set_tie_tolerance(self, tol: float) -> None:
        if hasattr(self.stacked, "set_tie_tolerance"):  # a plugin's model has no attention knobs
            self.stacked.set_tie_tolerance(tol)

    def set_soft_phase(self, on: bool) -> None:
        if hasattr(self.stacked, "set_soft_phase"):  # a plugin's model has no attention knobs
            self.stacked.set_soft_phase(on)

    def forward(self, tokens: torch.Tensor, internals: bool = False,
                logit_only: bool = False) -> dict[str, torch.Tensor]:
        """tokens (M, B, T), one batch per member, or (B, T) shared by all members. Returns Recognizer.forward's keys,
        each with a leading member axis."""
        if tokens.dim() == 3 and tokens.shape[0] != self.M:
            raise ValueError(f"ensemble: tokens have {tokens.shape[0]} member batches but the ensemble has {self.M}")
        if tokens.dim() == 2:
            tokens = tokens.expand(self.M, *tokens.shape)
        if not hasattr(self.stacked, "forward_members"):
            return self._plugin_forward(tokens)
        return self.stacked.forward_members(tokens, internals, logit_only)

    def _plugin_forward(self, tokens):
        """A plugin's model (models/kinds.py), which knows nothing of members: its own forward with member i's
        parameters, for one member as it is, for several through torch.func.vmap (a builder that declares its model
        `stackable`)."""
        params = dict(self.stacked.named_parameters())
        buffers = dict(self.stacked.named_buffers())
        template = self._template[0]
        if self.M == 1:
            out = torch.func.functional_call(template, ({k: v[0] for k, v in params.items()}, buffers), (tokens[0],))
            return {key: value[None] for key, value in out.items()}
        run = lambda p, t: torch.func.functional_call(template, (p, buffers), (t,))  # noqa: E731
        return torch.func.vmap(run)(params, tokens)

    def member_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's parameters as a standalone Recognizer state_dict (copies)."""
        return {name: value[i].detach().clone() for name, value in self.stacked.state_dict().items()}

    @torch.no_grad()
    def load_member_state_dict(self, i: int, state_dict: dict[str, torch.Tensor]) -> None:
        """Overwrite member i with a standalone Recognizer state_dict of the same config."""
        check_state_dict(self.config, state_dict, f"ensemble member {i}")
        stacked = self.stacked.state_dict()
        for name, value in state_dict.items():
            stacked[name][i].copy_(value)

    def member(self, i: int) -> nn.Module:
        """A standalone copy of member i: same config, weights, device, train/eval mode and the knobs training sets
        (inverse temperature, tie tolerance, soft phase)."""
        with torch.random.fork_rng(devices=[]):
            model = build_model(self.config)
        model.load_state_dict(self.member_state_dict(i))
        model.to(next(self.parameters()).device)
        model.train(self.training)
        for mine, theirs in zip(model.attention_layers() if hasattr(model, "attention_layers") else [],
                                self.attention_layers(), strict=True):
            mine.inverse_temperature.copy_(theirs.inverse_temperature)
            mine.tol, mine.soft_phase = theirs.tol, theirs.soft_phase
        return model

    @torch.no_grad()
    def flatten_parameters(self) -> tuple[nn.Parameter, list[nn.Parameter], list[bool]]:
        """Move every trainable parameter into one (M, P) buffer, member i's values in row i. Returns the buffer as one
        Parameter (give it to the optimizer), the module's parameters, now views of the buffer's columns in the
        buffer's order, and for each whether the buffer holds it transposed.

        So per-member decay and clipping are one kernel each on the buffer and the optimizer updates one tensor. The
        weights of linear layers are held transposed, (in, out) per member: that is the layout of the gradient the
        batched matmul of `models.layers.linear` computes for them, so every gradient is a plain block of the buffer
        and gathering them (`models.train.Trainer.gather`) is one concatenation without copies. Call after
        .to(device), which would copy the parameters out of the buffer.
        """
        linear_weights = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)}
        params = [p for p in self.parameters() if p.requires_grad]
        transposed = [id(p) in linear_weights for p in params]
        flat = torch.empty(self.M, sum(p[0].numel() for p in params), dtype=params[0].dtype, device=params[0].device)
        for p, view in zip(params, buffer_views(flat, params, transposed), strict=True):
            view.copy_(p)
            p.data = view
        return nn.Parameter(flat), params, transposed

    @torch.no_grad()
    def parameter_norm(self, embeddings: bool = False) -> torch.Tensor:
        """(M,) l2 norm of each member's parameters selected by models.recognizer.counts_toward_norm (with
        embeddings=True: every trainable parameter with at least one axis), in float64."""
        squares = torch.zeros(self.M, dtype=torch.float64, device=next(self.parameters()).device)
        for name, p in self.stacked.named_parameters():
            counted = counts_toward_norm(name, p.shape[1:]) or (embeddings and p.dim() > 1)
            if p.requires_grad and counted:
                squares += p.double().reshape(self.M, -1).pow(2).sum(dim=1)
        return squares.sqrt()
