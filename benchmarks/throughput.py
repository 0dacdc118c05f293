"""Training throughput: a Python loop over standalone Recognizers against one stacked Ensemble of the same shape.

Both train the same thing: per model, a batch of random padded strings, binary cross-entropy on the membership logit,
backward, gradient clipping at norm 1 and an AdamW step. The unit is model-steps per second: one optimizer step of one
model. Each configuration is timed in rounds that alternate loop and ensemble, and the median round is reported, so
that a machine whose load changes during the run treats both alike.

The loop may be timed on a subset of the models (--loop-members K): each of its models steps on its own, so its
model-steps/s does not depend on how many models it loops over, and a subset is fair and much quicker.

    python benchmarks/throughput.py                        # CPU shape: d=32, 2 layers, 4 heads, T=32, batch 32, M=32
    python benchmarks/throughput.py --device cuda --members 256 --d-model 64 --seq-len 64 --batch 64 \\
        --loop-members 16 --variant soft saturated         # GPU shape

Prints one line per variant, then one JSON line per variant.
"""

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.append(str(Path(__file__).resolve().parents[1]))  # benchmarks.* for a script run by path

from satbench.harness.allocator import keep_freed_memory  # noqa: E402
from satbench.models import BOS, EOS, PAD, VARIANTS, Ensemble, ModelConfig, Recognizer  # noqa: E402
from satbench.models.train import TrainConfig, Trainer  # noqa: E402

VOCAB = EOS + 4  # PAD, BOS, EOS and three symbols


def random_batches(generator, members, batch, seq_len, device):
    """(members, batch, seq_len) tokens with BOS first and random-length padding, and (members, batch) labels."""
    tokens = torch.randint(EOS + 1, VOCAB, (members, batch, seq_len), generator=generator)
    tokens[..., 0] = BOS
    lengths = torch.randint(seq_len // 2, seq_len + 1, (members, batch, 1), generator=generator)
    tokens = tokens.masked_fill(torch.arange(seq_len) >= lengths, PAD)
    labels = torch.randint(0, 2, (members, batch), generator=generator).float()
    return tokens.to(device), labels.to(device)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def use_explicit_attention(model):
    """Turn off the fused scaled_dot_product_attention kernel, so that softmax attention materialises its weights (see
    models.attention.SelfAttention.fused_devices)."""
    for layer in model.attention_layers():
        layer.fused_devices = ()
    return model


def loop_trainer(config, seeds, tokens, labels, device, compiled=False, explicit=False):
    """One training step of every standalone Recognizer, each with its own AdamW, on the membership logit alone
    (logit_only), as the harness's Trainer takes it: both sides do the same work per model."""
    models, optimizers = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        model = Recognizer(config).to(device).train()
        if explicit:
            use_explicit_attention(model)
        if compiled:
            model.compile()
        models.append(model)
        optimizers.append(torch.optim.AdamW(model.parameters(), lr=1e-3))

    def step():
        for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            loss = F.binary_cross_entropy_with_logits(model(tokens[i], logit_only=True)["logit"], labels[i])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return step, len(models)


def ensemble_trainer(config, seeds, tokens, labels, device, compiled=False, explicit=False):
    """One training step of the Ensemble as the harness takes it (models.train.Trainer): sum of the members' mean
    losses, per-member clipping, one AdamW over the flat parameter buffer."""
    ensemble = Ensemble(config, seeds).to(device).train()
    if explicit:
        use_explicit_attention(ensemble)
    trainer = Trainer(ensemble, TrainConfig(lr=1e-3, clip=1.0, schedule="constant", warmup_steps=0, compile=compiled,
                                            tf32=torch.backends.cuda.matmul.allow_tf32))
    return lambda: trainer.step(tokens, labels), ensemble.M


def matmul_flops_per_model_step(config, seq_len: int, batch: int) -> int:
    """The multiply-adds (x2) of one model's training step in matmuls: the linear layers and both attention products,
    forward and twice that backward, for a pass on the membership logit alone (logit_only), whose last block answers
    one query per string after projecting every position's q, k and v. Causal masks and padding are not subtracted:
    what the kernels are asked to do."""
    d, f, T = config.d_model, config.d_ff, seq_len
    qkv, rest = 2 * 3 * d * d, 2 * (d * d + 2 * d * f) + 2 * 2 * T * d  # per query position
    per_string = config.n_layers * T * qkv + ((config.n_layers - 1) * T + 1) * rest + 2 * d
    return 3 * batch * per_string


def time_steps(step, steps, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - start


def measure(config, args, seeds, tokens, labels, device):
    """Median model-steps/s of loop and ensemble over alternating rounds, and warnings raised while warming up."""
    loop, loop_models = loop_trainer(config, seeds[: args.loop_members], tokens, labels, device, args.compile,
                                     args.explicit)
    ensemble, members = ensemble_trainer(config, seeds, tokens, labels, device, args.compile, args.explicit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(args.warmup):
            loop()
            ensemble()
    loop_rates, ensemble_rates = [], []
    for _ in range(args.rounds):
        loop_rates.append(loop_models * args.steps / time_steps(loop, args.steps, device))
        ensemble_rates.append(members * args.steps / time_steps(ensemble, args.steps, device))
    notes = sorted({str(w.message).splitlines()[0] for w in caught})
    return statistics.median(loop_rates), statistics.median(ensemble_rates), notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--members", type=int, default=32, help="ensemble size M")
    parser.add_argument("--loop-members", type=int, default=None, help="time the loop on this many models (default M)")
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--d-ff", type=int, default=None, help="default 2 * d_model")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=32, help="T, BOS included")
    parser.add_argument("--batch", type=int, default=32, help="strings per model per step")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--variant", nargs="+", default=["soft"], choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile every model, loop and ensemble (train.compile) alike; compiled while "
                             "warming up")
    parser.add_argument("--tf32", action="store_true",
                        help="TF32 for CUDA's fp32 matmuls, loop and ensemble (train.tf32) alike")
    parser.add_argument("--explicit", action="store_true",
                        help="softmax attention with its weights materialised, loop and ensemble alike (the default "
                             "is the fused scaled_dot_product_attention kernel, as in the harness)")
    parser.add_argument("--no-keep-freed-memory", dest="keep_freed_memory", action="store_false",
                        help="leave glibc's default of returning large freed blocks to the kernel")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    if args.threads:
        torch.set_num_threads(args.threads)
    args.loop_members = args.loop_members or args.members
    if not 1 <= args.loop_members <= args.members:
        parser.error(f"--loop-members: {args.loop_members} is not between 1 and --members = {args.members}")
    allocator = "glibc default"
    if args.keep_freed_memory and device.type == "cpu" and keep_freed_memory():
        allocator = "glibc keeps freed blocks <= 32 MiB"
    seeds = list(range(args.members))
    tokens, labels = random_batches(torch.Generator().manual_seed(0), args.members, args.batch, args.seq_len, device)
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {allocator}"

    rows = []
    for variant in args.variant:
        config = ModelConfig(vocab_size=VOCAB, d_model=args.d_model, n_heads=args.heads, n_layers=args.layers,
                             d_ff=args.d_ff or 2 * args.d_model, attention=variant, max_len=args.seq_len)
        loop, ensemble, notes = measure(config, args, seeds, tokens, labels, device)
        rows.append({"variant": variant, "device": device.type, "hardware": hardware, "torch": torch.__version__,
                     "members": args.members, "loop_members": args.loop_members, "d_model": args.d_model,
                     "d_ff": config.d_ff, "layers": args.layers, "heads": args.heads, "seq_len": args.seq_len,
                     "batch": args.batch, "steps": args.steps, "rounds": args.rounds, "compiled": args.compile,
                     "explicit_attention": args.explicit, "tf32": args.tf32,
                     "loop_model_steps_per_s": round(loop, 1), "ensemble_model_steps_per_s": round(ensemble, 1),
                     "ratio": round(ensemble / loop, 2), "warnings": notes})
        tflops = ensemble * matmul_flops_per_model_step(config, args.seq_len, args.batch) / 1e12
        rows[-1]["ensemble_matmul_tflops"] = round(tflops, 3)
        subset = f" (timed on {args.loop_members} of {args.members} models)" if args.loop_members < args.members else ""
        how = (", compiled" if args.compile else "") + (", explicit attention" if args.explicit else "")
        how += ", TF32" if args.tf32 else ""
        print(f"{variant}{how} on {device.type} [{hardware}] d={args.d_model} L={args.layers} H={args.heads} "
              f"T={args.seq_len} B={args.batch} M={args.members}: loop {loop:,.1f} model-steps/s{subset}, "
              f"ensemble {ensemble:,.1f} model-steps/s ({tflops:.3g} TFLOP/s in matmuls), ratio {ensemble / loop:.2f}x",
              flush=True)
        for note in notes:
            print(f"  warning while warming up: {note}", flush=True)
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
