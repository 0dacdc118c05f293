"""Checkpoint selection (eval.select): which point of training a member's numbers describe.

The peers do not report the model after the last step. FLaRe (Butoi et al. 2025) keeps the checkpoint that does best
on a validation split of the training distribution; B20 (Bhattamishra et al. 2020) report, for each length bin, the
best test accuracy over their epochs. Both are here, and `final` (the last step) stays the default:

    validation   at each of eval.checkpoints points, every member's recognition cross-entropy on its validation split
                 (FLaRe's criterion; a tie keeps the earlier step); the checkpoint with the lowest replaces the final
                 parameters before evaluation, and each member's training log ends at its chosen step (the
                 checkpoints are logged steps), so every metric and probe describes that model.
    best_test    the final model is evaluated as usual, and at c = 1 each region (in distribution, each bin, every
                 length beyond training) then reads the best accuracy over the checkpoints and the final model. The
                 choice is made on test data: an upper bound on what a rule that cannot see the test strings would
                 report, and every table that shows it says so. Every other number (other scales, per-length accuracy,
                 the probes) describes the final model.

A row records the rule, the checkpoints, the step chosen and the final model's accuracies at c = 1 by region
(`metrics["selection"]`), so that one run measures what the selection changes.
"""

import numpy as np
import torch

from satbench.data import stack_splits
from satbench.probes.evaluate import EvalConfig, evaluate_ensemble, judge_members


def checkpoint_steps(steps: int, checkpoints: int) -> list[int]:
    """`checkpoints` steps spread evenly over training, ending at the last one: for 7,800 steps and 25 checkpoints,
    the ends of 25 equal stretches (B20's epochs)."""
    count = min(checkpoints, steps)
    return sorted({int(round(steps * (k + 1) / count)) for k in range(count)})


class CheckpointSelection:
    """Called at each checkpoint step with the ensemble in eval mode (`models.train.train_ensemble`'s on_checkpoint);
    `finish` before the final evaluation, `record` on the final metrics."""

    def __init__(self, cells, datasets, device):
        first = cells[0]
        self.rule, self.eval = first.eval.select, first.eval
        self.steps = checkpoint_steps(first.train.steps, first.eval.checkpoints)
        self.device = device
        self.data_cfg = first.data
        if self.rule == "validation":
            if any(d.validation is None for d in datasets):
                raise ValueError("eval.select: validation needs a validation split (data.validation_size > 0)")
            self.validation = stack_splits([d.validation for d in datasets], device)
            self.best_loss = [np.inf] * len(cells)  # the validation cross-entropy of the best checkpoint so far (NaN
            # never wins: a diverged member keeps its last finite checkpoint)
            self.best_accuracy = [np.nan] * len(cells)
            self.best_step = [0] * len(cells)
            self.best_state = None
        else:
            self.best = [{} for _ in cells]  # region -> (accuracy, step)
        self.tests = [d.test for d in datasets]
        # c = 1 only: what the peers measured, at a fraction of a full evaluation's cost.
        self.at_one = EvalConfig(scales=[1.0], tie_tolerances=[], length_bins=first.eval.length_bins,
                                 threshold=first.eval.threshold, batch_size=first.eval.batch_size,
                                 uniform_control=False)

    def __call__(self, step, ensemble):
        if self.rule == "validation":
            self._validate(step, ensemble)
        else:
            self._test(step, ensemble)

    @torch.no_grad()
    def _validate(self, step, ensemble):
        data = self.validation
        right, ce, _ = judge_members(ensemble, data.tokens, data.labels, data.next_labels, self.eval.batch_size,
                                     data.prefix_labels)
        real = (data.lengths >= 0).float()
        accuracy = ((right.float() * real).sum(1) / real.sum(1)).tolist()
        loss = ((ce * real).sum(1) / real.sum(1)).tolist()
        state = ensemble.stacked.state_dict()
        if self.best_state is None:
            self.best_state = {name: value.clone() for name, value in state.items()}
        for i in range(len(loss)):
            # Strictly lower: a tie keeps the earlier checkpoint. The first is always taken, so that a member whose
            # loss is NaN throughout keeps the first checkpoint and says so.
            if loss[i] < self.best_loss[i] or step == self.steps[0]:
                self.best_loss[i], self.best_accuracy[i], self.best_step[i] = loss[i], accuracy[i], step
                for name, value in state.items():
                    self.best_state[name][i].copy_(value[i])

    def _test(self, step, ensemble):
        metrics = evaluate_ensemble(ensemble, self.tests, self.data_cfg, self.at_one, self.device)
        for best, member in zip(self.best, metrics, strict=True):
            for region, accuracy in regions_at_one(member).items():
                if not np.isnan(accuracy) and (region not in best or accuracy > best[region][0]):
                    best[region] = (accuracy, step)

    def truncate(self, logs):
        """validation: each member's training log up to its chosen step, so that the probes that read the last entry
        (saturation, norm growth) describe the chosen model."""
        if self.rule == "validation":
            for log, step in zip(logs, self.best_step, strict=True):
                log[:] = [entry for entry in log if entry["step"] <= step]

    @torch.no_grad()
    def finish(self, ensemble):
        """validation: the final model's accuracies at c = 1 recorded, then every member's parameters become those of
        its chosen checkpoint."""
        if self.rule == "validation":
            self.final = [regions_at_one(member) for member in
                          evaluate_ensemble(ensemble, self.tests, self.data_cfg, self.at_one, self.device)]
            for name, value in ensemble.stacked.state_dict().items():
                value.copy_(self.best_state[name])

    def record(self, metrics, final_step):
        """The selection into each member's metrics; best_test also replaces the c = 1 accuracies of every region
        by their best over the checkpoints and the final model."""
        for i, member in enumerate(metrics):
            record = {"rule": self.rule, "checkpoints": self.steps}
            if self.rule == "validation":
                record |= {"step": self.best_step[i], "validation_acc": self.best_accuracy[i],
                           "validation_ce": self.best_loss[i], "final": self.final[i]}
            else:
                record["final"] = regions_at_one(member)
                chosen = {}
                for region, final in record["final"].items():
                    accuracy, step = self.best[i].get(region, (final, final_step))
                    if np.isnan(final) or final >= accuracy:
                        accuracy, step = final, final_step
                    set_region_at_one(member, region, accuracy)
                    chosen[region] = step
                member["recognized"]["1"] = member["acc"]["1"] >= self.eval.threshold
                record["step"] = chosen
            member["selection"] = record


def regions_at_one(member) -> dict:
    """A member's accuracies at c = 1 by region: "in" (in distribution), "long" (every length beyond training) and
    each bin."""
    return {"in": member["acc"]["1"], "long": member["acc_long"]["1"],
            **{name: values["1"] for name, values in member["acc_bins"].items()}}


def set_region_at_one(member, region, accuracy):
    if region == "in":
        member["acc"]["1"] = accuracy
    elif region == "long":
        member["acc_long"]["1"] = accuracy
    else:
        member["acc_bins"][region]["1"] = accuracy
