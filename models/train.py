"""Training one stacked ensemble: every cell of one shape group is a member, trained in the same forward pass.

Each member keeps its own data, its own batch order (a generator seeded by the cell's seed) and its own initial
weights (the Ensemble seeds member i from its cell's seed), so a cell's result does not depend on which other cells
share its group.

Training lives with the models, not with the harness: it is the one operation every user of an Ensemble needs (the
tests, the benchmarks and a notebook train without a grid), and it depends on nothing above models/. The harness
only builds a TrainConfig from a cell and calls `train_ensemble`.
"""

import contextlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from satbench.data import stack_splits
from satbench.models.attention import annealed_inverse_temperature, get_variant
from satbench.models.ensemble import Ensemble, buffer_views
from satbench.models.objectives import auxiliary_losses, judge_strings, member_losses
from satbench.models.recognizer import AUX_HEADS, aux_names

SCHEDULES = ("constant", "cosine", "linear")
OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
LOG_SCHEDULES = ("linear", "log")
TOLERANCE_SCHEDULES = ("constant", "linear", "cosine")
LOSSES = ("bce", "mse")


@dataclass
class TrainConfig:
    """The `train` section of a bench config. Errors name the field as `train.<field>`."""

    steps: int = 400
    batch_size: int = 64
    # A rate, or random restarts as FLaRe (Butoi et al. 2025) ran them: {loguniform: [lo, hi]} draws each seed's rate
    # log-uniformly from [lo, hi] (`learning_rate`), and the members of one ensemble step at their own rates. The seed
    # alone decides the draw, so restart k has the same rate on every language of a grid.
    lr: float | dict = 3e-3
    schedule: str = "cosine"  # constant | cosine | linear (after `warmup_steps` of linear warm-up)
    warmup_steps: int = 20
    # adamw: Adam with decoupled weight decay (p *= 1 - lr * wd); adam: Adam with the decay added to the gradient (L2);
    # sgd: SGD with `momentum`, the decay added to the gradient; rmsprop: torch's RMSprop (alpha 0.99), the decay added
    # to the gradient, as Bhattamishra et al. (2020) trained. Merrill et al. trained with Adam(W).
    optimizer: str = "adamw"  # adamw | adam | sgd | rmsprop
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    clip: float = 1.0  # per-member gradient norm; 0 turns clipping off
    # Steps at which the probes follow training: every `log_every` steps (linear), or `log_points` steps spaced evenly
    # in log(t) (log), so that 10^5 steps cost a few dozen probe points and early growth is not missed.
    log_schedule: str = "linear"  # linear | log
    log_every: int = 50
    log_points: int = 40
    # Save every member at each logged step (the harness writes <run>/checkpoints/<cell hash>/step-<t>.pt), so that a
    # model can be reopened at any point of its norm's growth.
    keep_checkpoints: bool = False
    # For model.surrogate tolerant: the tie tolerance while training, model.tolerant_tol throughout (constant), or
    # falling from it to exactly 0 at the last step (linear, cosine), after which the model is evaluated at model.tol
    # like any exact model: can a tolerance that lets ties form anneal into exact, value-distinct ties?
    tolerance_schedule: str = "constant"  # constant | linear | cosine
    # The first soft_steps steps train an exact variant as soft attention (softmax of its scores), the rest through
    # its surrogate with a fresh optimizer and learning-rate schedule: a soft model trained as by a run of soft_steps
    # steps, then fine-tuned into a saturated one, within one run (0: the variant from the first step). A step logged
    # at soft_steps (with a log schedule that holds it) measures the trained soft model under the variant's attention.
    soft_steps: int = 0
    # FLaRe's auxiliary losses beside recognition (membership task only; models.objectives.auxiliary_losses): "lm",
    # the next token of each member string, and "next_symbols", the set of symbols that can follow each of its
    # prefixes. Each term is multiplied by aux_weight: a number, or {loguniform: [lo, hi]} drawn per seed and per
    # term as train.lr is (FLaRe draws from [0.01, 10]).
    aux_losses: list[str] = field(default_factory=list)
    aux_weight: float | dict = 1.0
    # The recognition loss on each output bit: bce (binary cross-entropy on the logit), or mse (the squared error of
    # its sigmoid, B20's loss; models.objectives.member_losses).
    loss: str = "bce"
    bf16: bool = False  # autocast on CUDA only; ignored on the CPU
    # TF32 for the fp32 matmuls of a training step on CUDA, except the exact variants' attention scores (see
    # models.attention.ieee_matmuls), which a compiled step (train.compile) computes in TF32 too. Evaluation always
    # runs in full fp32: ties are measured there.
    tf32: bool = False
    # torch.compile the forward pass and the loss (and so their backward), with CUDA graphs on CUDA: a compile of tens
    # of seconds per shape group for fewer, fused kernels per step, meant for long runs on the GPU (on the CPU the
    # step gets barely faster, benchmarks/compiled_step.py). Where compilation fails, training goes on uncompiled
    # after one warning.
    compile: bool = False

    def __post_init__(self):
        check_rate("train.lr", self.lr)
        check_rate("train.aux_weight", self.aux_weight)
        self.aux_losses = aux_names("train.aux_losses", self.aux_losses)
        for name in ("steps", "batch_size", "log_every", "log_points"):
            if not getattr(self, name) > 0:
                raise ValueError(f"train.{name}: {getattr(self, name)} must be > 0")
        for name, choices in (("schedule", SCHEDULES), ("optimizer", OPTIMIZERS), ("log_schedule", LOG_SCHEDULES),
                              ("tolerance_schedule", TOLERANCE_SCHEDULES), ("loss", LOSSES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"train.{name}: {getattr(self, name)!r} is not one of {', '.join(choices)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"train.momentum: {self.momentum} must lie in [0, 1)")
        for name in ("weight_decay", "clip"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"train.{name}: {getattr(self, name)} must be a finite number")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.clip < 0:
            raise ValueError("train: warmup_steps, weight_decay and clip must be >= 0")
        if isinstance(self.soft_steps, bool) or not isinstance(self.soft_steps, int) or \
                not 0 <= self.soft_steps < self.steps:
            raise ValueError(f"train.soft_steps: {self.soft_steps!r} must be an integer in [0, train.steps)")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"train.betas: {list(self.betas)} must lie in [0, 1)")
        for name in ("keep_checkpoints", "bf16", "tf32", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"train.{name}: {getattr(self, name)!r} is not true or false")


    @property
    def random_lr(self) -> bool:
        return isinstance(self.lr, dict)

    def learning_rate(self, seed: int) -> float:
        """The peak rate of the member trained from `seed`: train.lr, or its draw from train.lr's log-uniform range."""
        return draw(self.lr, seed, stream=0)

    def aux_weights(self, seed: int) -> dict[str, float]:
        """The coefficient of each auxiliary loss for the member trained from `seed`, each term drawn on its own."""
        return {name: draw(self.aux_weight, seed, stream=1 + AUX_HEADS.index(name)) for name in self.aux_losses}


def check_rate(name, value):
    """A positive number, or {loguniform: [lo, hi]} with 0 < lo < hi."""
    if isinstance(value, dict):
        bounds = value.get("loguniform") if list(value) == ["loguniform"] else None
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) for b in bounds)
                and 0 < bounds[0] < bounds[1] < math.inf):
            raise ValueError(f"{name}: {value!r} must be a number or {{loguniform: [lo, hi]}} with 0 < lo < hi")
    elif not (_is_number(value) and 0 < value < math.inf):
        raise ValueError(f"{name}: {value!r} must be a finite number > 0")


def draw(value, seed: int, stream: int) -> float:
    """`value` itself, or for {loguniform: [lo, hi]} a draw log-uniform in [lo, hi] from a random stream of its own
    (the seed, a fixed tag and `stream`), which shares nothing with the data or the weights: restart `seed` draws the
    same number on every language."""
    if not isinstance(value, dict):
        return float(value)
    lo, hi = value["loguniform"]
    return math.exp(np.random.default_rng([int(seed), DRAW_TAG, stream]).uniform(math.log(lo), math.log(hi)))


DRAW_TAG = 0x1EA2


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def logged_steps(cfg: TrainConfig) -> list[int]:
    """The steps (updates taken so far) at which the training log and the probes record, always 0 and cfg.steps:
    every log_every steps, or log_points steps spaced evenly in log(t) between 1 and cfg.steps."""
    if cfg.log_schedule == "log":
        spaced = np.unique(np.round(np.geomspace(1, cfg.steps, cfg.log_points)).astype(int))
        return sorted({0, cfg.steps, *spaced.tolist()})
    return sorted({*range(0, cfg.steps, cfg.log_every), cfg.steps})


def make_optimizer(cfg: TrainConfig, params, lr: float):
    """The optimizer of cfg.optimizer at rate `lr`, with no weight decay of its own: `Trainer` applies each member's.

    Adam(W) and SGD run torch's fused single-kernel step (CPU and CUDA), Adam(W)'s with its learning rate as a
    tensor, which Trainer.set_learning_rate writes in place: a step then reads no host value. torch has no fused
    RMSprop; its foreach path over one flat tensor is a handful of kernels."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, fused=True)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    device = params[0].device
    return optimizer(params, lr=torch.tensor(lr, device=device), betas=tuple(cfg.betas), weight_decay=0.0,
                     fused=True)


def tolerance_factor(schedule: str, progress: float) -> float:
    """The share of model.tolerant_tol a `tolerant` model ties at, `progress` in [0, 1] of training: 1 throughout
    (constant), or falling to exactly 0 at the last step, linearly or along a half cosine."""
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.0 if progress >= 1 else 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def learning_rate_factor(cfg: TrainConfig):
    """The share of cfg.lr at each step: `warmup_steps` of linear warm-up, then the schedule. With train.soft_steps the
    soft phase and the fine-tuning after it run the schedule each over its own steps, warm-up included: the soft
    phase is then the soft model a run of soft_steps steps trains, and the rest fine-tunes it afresh."""
    def within(step, length):
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, length - cfg.warmup_steps)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "linear":
            return 1 - progress
        return 1.0

    def factor(step):
        if cfg.soft_steps and step >= cfg.soft_steps:
            return within(step - cfg.soft_steps, cfg.steps - cfg.soft_steps)
        return within(step, cfg.soft_steps or cfg.steps)
    return factor


class Trainer:
    """The optimizer of one ensemble and its training step: `Trainer(ensemble, cfg, weight_decays).step(tokens, labels,
    prefix_labels)` takes one step of every member and returns their (M,) losses.

    Parameters live in one (M, P) buffer (Ensemble.flatten_parameters) and `gather` puts the gradients into a
    second, so per-member clipping and decay are a kernel or two on the buffers and the optimizer updates one tensor.
    Adam's and SGD's updates are elementwise, so row i evolves as member i would under its own optimizer. Weight decay
    is applied by hand, per member, exactly where torch applies it: for adamw p *= 1 - lr * wd before the update, for
    adam, sgd and rmsprop grad += wd * p.

    With train.lr's random restarts every member has its own peak rate (cfg.learning_rate of its seed). Every update
    of these optimizers is proportional to the rate (Adam's and RMSprop's moments and SGD's momentum do not depend on
    it), so the optimizer steps at the schedule's factor alone and each member's row of the update is then multiplied
    by its rate.
    """

    def __init__(self, ensemble: Ensemble, cfg: TrainConfig, weight_decays=None):
        self.ensemble, self.cfg = ensemble, cfg
        self.flat, self.params, self.transposed = ensemble.flatten_parameters()
        self.grad = torch.zeros_like(self.flat)
        self.flat.grad = self.grad
        for p, view in zip(self.params, buffer_views(self.grad, self.params, self.transposed), strict=True):
            p.grad = view  # for whoever reads .grad: `gather` fills the buffer in place
        self.loss_grad = torch.ones(ensemble.M, dtype=self.flat.dtype, device=self.flat.device)  # d(sum)/d(loss)
        device = self.flat.device
        rates = [cfg.learning_rate(seed) for seed in ensemble.seeds]
        # One rate for all is the optimizer's own; members at their own rates get a column of them.
        shared = len(set(rates)) == 1
        self.peak_lr = rates[0] if shared else 1.0
        self.member_lr = None if shared else torch.tensor(rates, dtype=self.flat.dtype, device=device)[:, None]
        self.optimizer = make_optimizer(cfg, [self.flat], self.peak_lr)
        self.lr_factor, self.step_count = learning_rate_factor(cfg), 0
        weights = [cfg.aux_weights(seed) for seed in ensemble.seeds]
        self.aux_weights = {name: torch.tensor([w[name] for w in weights], device=device) for name in cfg.aux_losses}
        self.next_task = ensemble.config.next_symbols  # else next-symbol labels are train.aux_losses' targets
        decays = weight_decays if weight_decays is not None else [cfg.weight_decay] * ensemble.M
        self.decay = torch.tensor(decays, dtype=self.flat.dtype, device=device)[:, None] if any(decays) else None
        if self.decay is not None and self.member_lr is not None and cfg.optimizer == "adamw":
            self.decay = self.decay * self.member_lr  # adamw decays by lr * wd, each member at its own rate
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda")
        self.tf32 = cfg.tf32 and device.type == "cuda"
        self.compiled = cfg.compile
        self.losses = self.eager_losses
        if cfg.compile:
            # Every Trainer compiles the same function: without a reset, each shape group would add a compiled variant
            # (and CUDA-graph memory) until torch's recompile limit silently turned compilation off.
            torch._dynamo.reset()
            # CUDA graphs replay the static-shape step without launching its kernels one by one.
            self.losses = torch.compile(self.eager_losses, mode="reduce-overhead" if device.type == "cuda" else None)

    def eager_losses(self, tokens, labels, prefix_labels=None, next_labels=None) -> torch.Tensor:
        """Each member's loss on its batch, (M,): the forward pass and models.objectives.member_losses, plus
        models.objectives.auxiliary_losses with train.aux_losses."""
        with self.autocast:
            # A membership loss reads one logit per string: a pass that computes only those (Recognizer's logit_only).
            out = self.ensemble(tokens, logit_only=prefix_labels is None and next_labels is None and
                                not self.aux_weights)
        losses = member_losses(out, labels, prefix_labels, next_labels if self.next_task else None, self.cfg.loss)
        if self.aux_weights:
            losses = losses + auxiliary_losses(out, tokens, labels, next_labels, self.aux_weights)
        return losses

    def gradients(self, tokens, labels, prefix_labels=None, next_labels=None):
        """(losses (M,), one gradient per parameter): the forward pass, the loss and its backward, compiled with
        train.compile. torch.autograd.grad hands back each gradient as backward computed it: accumulating into .grad
        would cost a kernel per parameter, and a copy for each whose layout differs from its parameter's."""
        losses = self.losses(tokens, labels, prefix_labels, next_labels)
        # The gradient of the sum of the members' losses, seeded with ones rather than summed first.
        grads = torch.autograd.grad(losses, self.params, self.loss_grad, allow_unused=True, materialize_grads=True)
        return losses, grads

    @torch.no_grad()
    def gather(self, grads) -> None:
        """The gradients into the gradient buffer, in one concatenation (the buffer holds every gradient in the layout
        backward computed it, see Ensemble.flatten_parameters), of which every parameter's .grad is a view."""
        blocks = [g.transpose(1, 2) if t else g for g, t in zip(grads, self.transposed, strict=True)]
        torch.cat([b.reshape(self.ensemble.M, -1) for b in blocks], dim=1, out=self.grad)

    @torch.no_grad()
    def clip_gradients(self, max_norm: float) -> torch.Tensor:
        """Clip each member's gradient to l2 norm `max_norm`, as torch.nn.utils.clip_grad_norm_ would for that member
        alone (the norm over all of its parameters is its row's norm): g / max(1, (norm + 1e-6) / max_norm). Returns
        the (M,) norms before clipping."""
        norms = torch.linalg.vector_norm(self.grad, dim=1, keepdim=True)
        self.grad.div_((norms + 1e-6).div_(max_norm).clamp_(min=1.0))
        return norms.squeeze(1)

    def restart(self) -> None:
        """A fresh optimizer (Adam's moments and step count at zero) for fine-tuning from where training stands."""
        self.optimizer = make_optimizer(self.cfg, [self.flat], self.peak_lr)

    @torch.no_grad()
    def set_learning_rate(self, lr: float) -> None:
        """The schedule's rate for the next step: written into Adam's lr tensor in place (no host value for the step
        to wait on), or into the optimizer's float."""
        group = self.optimizer.param_groups[0]
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr

    @torch.no_grad()
    def update(self, grads) -> None:
        """One optimizer step of every member from its gradients: gathered, clipped, decayed, applied."""
        self.gather(grads)
        lr = self.peak_lr * self.lr_factor(self.step_count)
        self.set_learning_rate(lr)
        if self.cfg.clip > 0:
            self.clip_gradients(self.cfg.clip)
        if self.decay is not None and self.cfg.optimizer == "adamw":
            self.flat.addcmul_(self.flat, self.decay, value=-lr)  # p *= 1 - lr * wd, per member
        elif self.decay is not None:
            self.grad.addcmul_(self.flat, self.decay)
        if self.member_lr is None:
            self.optimizer.step()
        else:  # the update at the schedule's factor, each member's row scaled by its own rate
            before = self.flat.detach().clone()
            self.optimizer.step()
            self.flat.sub_(before).mul_(self.member_lr).add_(before)
        self.step_count += 1

    def step(self, tokens, labels, prefix_labels=None, next_labels=None) -> torch.Tensor:
        with tf32_matmuls(self.tf32):
            losses, grads = self._gradients_with_fallback(tokens, labels, prefix_labels, next_labels)
        self.update(grads)
        # A CUDA graph's next replay overwrites its outputs.
        return losses.detach().clone() if self.compiled else losses.detach()

    def _gradients_with_fallback(self, tokens, labels, prefix_labels=None, next_labels=None):
        """`gradients`, falling back to the uncompiled step where the first compiled one fails."""
        try:
            return self.gradients(tokens, labels, prefix_labels, next_labels)
        except Exception as error:  # noqa: BLE001  a compiler's failure, of any type, on the first step
            if not self.compiled or self.step_count > 0:
                raise
            first_line = str(error).splitlines()[0] if str(error) else ""
            warnings.warn(f"train.compile: compiling the step failed, training uncompiled ({type(error).__name__}: "
                          f"{first_line})", stacklevel=2)
            self.compiled, self.losses = False, self.eager_losses
            return self.gradients(tokens, labels, prefix_labels, next_labels)


@contextlib.contextmanager
def tf32_matmuls(enabled: bool):
    """TF32 for CUDA's fp32 matmuls inside the block or not, as `enabled` says; the setting before it afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def train_ensemble(model_cfg, train_cfg: TrainConfig, seeds, train_splits, device, weight_decays=None, on_log=None,
                   progress=True, on_step=None, checkpoints=(), on_checkpoint=None, log_steps=()):
    """Train M members (one per seed and split) together; returns the ensemble and each member's training log.

    `weight_decays` gives each member its own decoupled weight decay (default: train_cfg.weight_decay for all), so
    that a weight-decay axis does not split a shape group.

    `on_log(step, ensemble)` may return a list of M dicts merged into the log at each logged step (the probes use it
    to follow saturation over training).

    `on_step(steps_taken)` is called after every update: the bench advances its one bar over every group's training
    with it (and then passes progress=False, so that no second bar estimates the same time).

    `on_checkpoint(steps_taken, ensemble)` is called after each update whose count is in `checkpoints`, with the
    ensemble in eval mode as it will be evaluated (its own attention also within a soft phase, ties at model.tol):
    eval.select reads it. `log_steps` are logged besides train_cfg's schedule.
    """
    ensemble = Ensemble(model_cfg, seeds).to(device)
    data = stack_splits(train_splits, device)
    M = len(seeds)
    # Batch order: one generator per member, so a member's batches do not depend on its neighbours.
    batch_index = torch.stack([
        (torch.rand(train_cfg.steps, train_cfg.batch_size, generator=torch.Generator().manual_seed(seed))
         * data.count[i].item()).long()
        for i, seed in enumerate(seeds)]).to(device)  # (M, steps, B)
    members = torch.arange(M, device=device)[:, None]

    if train_cfg.aux_losses and set(train_cfg.aux_losses) != set(model_cfg.aux_heads):
        raise ValueError(f"train.aux_losses: {train_cfg.aux_losses} need model.aux_heads {train_cfg.aux_losses} "
                         f"(the model has {list(model_cfg.aux_heads)})")
    if "next_symbols" in train_cfg.aux_losses and data.next_labels is None:
        raise ValueError("train.aux_losses: next_symbols needs next-symbol labels on the training splits "
                         "(satbench.data.with_next_symbols)")
    trainer = Trainer(ensemble, train_cfg, weight_decays)
    autocast = trainer.autocast
    exact = get_variant(model_cfg.attention).exact
    anneal = exact and model_cfg.surrogate == "anneal"
    # An annealed tolerance: the tie tolerance of a `tolerant` model falls to 0 by the last step.
    falling = exact and model_cfg.surrogate == "tolerant" and train_cfg.tolerance_schedule != "constant"
    logs = [[] for _ in range(M)]

    @torch.no_grad()
    def log_step(step, tokens, labels, prefix, next_):
        """Loss, accuracy and norm of the parameters after `step` updates, on the batch about to be trained on.

        Runs before that batch's training forward: the probes rescale the parameters in place, which must not
        happen between a forward pass and its backward pass.
        """
        next_ = next_ if model_cfg.next_symbols else None  # the task's labels, not train.aux_losses' targets
        with autocast:
            out = ensemble(tokens, logit_only=prefix is None and next_ is None)
        losses = member_losses(out, labels, prefix, next_, train_cfg.loss)  # recognition, without train.aux_losses
        accuracy = judge_strings(out, labels, next_, prefix)[0].float().mean(dim=-1)
        norms, norms_all = ensemble.parameter_norm(), ensemble.parameter_norm(embeddings=True)
        extra = on_log(step, ensemble) if on_log else None
        ensemble.train()  # probes may switch to eval mode
        # One read-back per quantity for all members, not one per member.
        columns = zip(losses.tolist(), accuracy.tolist(), norms.tolist(), norms_all.tolist(), strict=True)
        for i, (loss, acc, norm, norm_all) in enumerate(columns):
            entry = {"step": step, "loss": loss, "batch_acc": acc, "norm": norm, "norm_with_embeddings": norm_all}
            logs[i].append(entry | (extra[i] if extra else {}))

    def batch(step):
        idx = batch_index[:, step]  # (M, B)
        prefix = None if data.prefix_labels is None else data.prefix_labels[members, idx]
        next_ = None if data.next_labels is None else data.next_labels[members, idx]
        return data.tokens[members, idx], data.labels[members, idx], prefix, next_

    log_at = set(logged_steps(train_cfg)) | set(log_steps)
    ensemble.train()
    ensemble.set_soft_phase(train_cfg.soft_steps > 0)
    for step in tqdm(range(train_cfg.steps), desc="train", leave=False, disable=not progress):
        # The surrogates' schedules run over the steps the variant itself trains, after any soft phase.
        done = max(0, step - train_cfg.soft_steps) / max(1, train_cfg.steps - train_cfg.soft_steps - 1)
        if step == train_cfg.soft_steps > 0:  # the soft model is trained: fine-tune it with a fresh optimizer
            ensemble.set_soft_phase(False)
            trainer.restart()
        if anneal:
            ensemble.set_inverse_temperature(annealed_inverse_temperature(done, model_cfg.anneal_max))
        if falling:
            ensemble.set_tie_tolerance(model_cfg.tolerant_tol * tolerance_factor(train_cfg.tolerance_schedule, done))
        targets = batch(step)
        if step in log_at:
            log_step(step, *targets)
        trainer.step(*targets)
        if on_checkpoint and step + 1 in checkpoints:
            if falling:
                ensemble.set_tie_tolerance(model_cfg.tol)
            ensemble.set_soft_phase(False)  # judged as the variant it is being trained into
            ensemble.eval()
            on_checkpoint(step + 1, ensemble)
            ensemble.train()
            ensemble.set_soft_phase(step + 1 < train_cfg.soft_steps)
        if on_step:
            on_step(step + 1)
    if falling:  # the trained model, logged last and evaluated after, ties at model.tol like any exact model
        ensemble.set_tie_tolerance(model_cfg.tol)
    log_step(train_cfg.steps, *batch(train_cfg.steps - 1))
    ensemble.eval()
    if anneal:
        ensemble.set_inverse_temperature(1.0)
    return ensemble, logs
