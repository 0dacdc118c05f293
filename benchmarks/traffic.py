"""Kernels and memory traffic of one training step of a stacked ensemble, counted on the CPU.

A training step (models.train.Trainer.step: forward, loss, backward, clipping, per-member decay, optimizer) runs under a
TorchDispatchMode that sees every aten operator autograd and the optimizer dispatch. Each operator that computes
something is one kernel; views, reshapes and other operators that only change metadata are not counted. The traffic
of a kernel is modelled as the bytes of the tensors it reads plus those it writes (each tensor argument and result
once, at its own size), which is what the kernel moves when nothing stays in cache; divided by the members, it is
the traffic per model-step, which does not depend on how many members share the step.

The reference shape is the GPU benchmark's (d_model 64, 2 layers, 4 heads, T 64, batch 64, AdamW with clipping and
weight decay), with fewer members than on the GPU so that the CPU finishes in seconds; the counts per model-step do
not depend on M, the kernel count not at all. Prints one line per variant:

    traffic <variant>: <K> kernels/step, <B> MiB/model-step

With --compiled, the step of train.compile, whose forward and backward run as the kernels inductor generates for the
CPU (see `count_step`), after a compile of tens of seconds per variant; the lines read `traffic <variant> compiled:`.

    python benchmarks/traffic.py                   # every variant at the reference shape
    python benchmarks/traffic.py --variant soft --members 4
    python benchmarks/traffic.py --compiled
"""

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.append(str(Path(__file__).resolve().parents[1]))  # benchmarks.* for a script run by path

from benchmarks.throughput import VOCAB, random_batches  # noqa: E402
from satbench.models import VARIANTS, Ensemble, ModelConfig  # noqa: E402
from satbench.models.train import TrainConfig, Trainer  # noqa: E402

# Operators that only make a new view of existing memory or read metadata: no kernel runs.
METADATA_ONLY = {
    "view", "_unsafe_view", "reshape", "as_strided", "expand", "transpose", "t", "permute", "unsqueeze", "squeeze",
    "slice", "select", "split", "split_with_sizes", "unbind", "detach", "alias", "unflatten", "flatten", "narrow",
    "lift_fresh", "_reshape_alias", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
    "is_same_size", "_has_compatible_shallow_copy_type", "sym_size", "sym_stride", "sym_numel", "_local_scalar_dense",
    "diagonal", "movedim", "chunk", "_to_copy_noop", "_neg_view", "_conj", "values", "indices", "real", "imag",
    "_record_function_enter_new", "_record_function_exit",  # the optimizer's profiler markers
}


class KernelCounter(TorchDispatchMode):
    """Counts the kernels dispatched inside it and the bytes their tensor arguments and results occupy."""

    def __init__(self):
        super().__init__()
        self.kernels = Counter()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__.rstrip("_")
        if name not in METADATA_ONLY:
            self.kernels[name] += 1
            leaves = tree_flatten((args, kwargs or {}, out))[0]
            self.bytes += sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))
        return out


def count_step(variant: str, members: int, d_model: int, layers: int, heads: int, seq_len: int, batch: int,
               compiled: bool = False):
    """(kernels, MiB per model-step, kernels by operator) of one training step after a warm-up step.

    Compiled (train.compile), the forward pass and backward run as inductor's graphs, whose kernels no dispatch mode
    sees: they are counted from inductor's own record of each graph as it compiles them (a kernel per scheduled
    node, its bytes those of the buffers it reads and writes, the same model as above), and the rest of the step
    (the update) by the dispatch mode, as uncompiled."""
    config = ModelConfig(vocab_size=VOCAB, d_model=d_model, n_heads=heads, n_layers=layers, d_ff=2 * d_model,
                         attention=variant, max_len=seq_len)
    cfg = TrainConfig(steps=10, batch_size=batch, lr=1e-3, clip=1.0, weight_decay=0.1, compile=compiled)
    ensemble = Ensemble(config, list(range(members))).train()
    trainer = Trainer(ensemble, cfg, weight_decays=[0.1] * members)
    tokens, labels = random_batches(torch.Generator().manual_seed(0), members, batch, seq_len, torch.device("cpu"))
    counter = KernelCounter()
    if not compiled:
        trainer.step(tokens, labels)  # the optimizer allocates its state on the first step
        with counter:
            trainer.step(tokens, labels)
        return sum(counter.kernels.values()), counter.bytes / members / 2**20, counter.kernels

    graphs = compiled_graphs(lambda: trainer.step(tokens, labels))
    grads = trainer.gradients(tokens, labels)[1]  # compiled: counted in `graphs`, not by the dispatch mode
    with counter:
        trainer.update(grads)
    by_operator = counter.kernels + Counter({"inductor graph kernel": len(graphs)})
    return sum(by_operator.values()), (counter.bytes + sum(graphs)) / members / 2**20, by_operator


def compiled_graphs(run) -> list[int]:
    """The bytes each kernel of the graphs inductor compiles while `run()` runs reads and writes, one entry per
    kernel (inductor's scheduler nodes, without those that launch nothing)."""
    import torch._functorch.config
    import torch._inductor.config
    from torch._inductor import metrics
    from torch._inductor.compile_fx import inductor_metrics_log as log

    # Inductor measures its graphs only when its metrics log is on; turned on here without printing anything.
    level, propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False
    torch._dynamo.reset()
    metrics.reset()
    try:  # compile afresh: a graph taken from a cache is not measured
        with torch._inductor.config.patch(fx_graph_cache=False), \
                torch._functorch.config.patch(enable_autograd_cache=False):
            run()
    finally:
        log.setLevel(level)
        log.propagate = propagate
    # Inductor records each node's bytes divided by 4 (as fp32 elements).
    return [quarter_bytes * 4 for node, quarter_bytes in metrics.nodes_num_elem
            if quarter_bytes > 0 and type(node).__name__ != "NopKernelSchedulerNode"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--members", type=int, default=8, help="ensemble size M (the counts are per model-step)")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64, help="T, BOS included")
    parser.add_argument("--batch", type=int, default=64, help="strings per model per step")
    parser.add_argument("--by-operator", action="store_true", help="also list the kernels by operator")
    parser.add_argument("--compiled", action="store_true",
                        help="the step of train.compile (tens of seconds of compiling per variant)")
    args = parser.parse_args(argv)
    for variant in args.variant:
        kernels, mib, by_operator = count_step(variant, args.members, args.d_model, args.layers, args.heads,
                                               args.seq_len, args.batch, args.compiled)
        label = f"{variant} compiled" if args.compiled else variant
        print(f"traffic {label}: {kernels} kernels/step, {mib:.1f} MiB/model-step", flush=True)
        if args.by_operator:
            for name, count in by_operator.most_common():
                print(f"  {name}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
