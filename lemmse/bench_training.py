r"""``lemmse bench-train``: the cost of one training step of each architecture, measured in one run.

For every architecture (its preset, plus the options the config gives it) on ``C×H×W`` images,
batch ``B``, receptive field ``P``, the run measures, on this machine and in this one process:

* **loop** — milliseconds per step of :func:`lemmse.training.loop.train` itself (samples, the
  measurement ``B(Ax + σε)``, the scaled network input, MSE, backward, gradient clipping, AdamW,
  EMA, logging), from the ``seconds`` it writes to ``stats.jsonl`` (set-up excluded);
* **bare** — milliseconds per step of a bare PyTorch loop on the same model: forward on a fixed
  random batch, MSE, backward, the same fused ``AdamW.step`` — nothing else;
* the ratio loop / bare (the training loop's own overhead), the parameters, the FLOPs of one
  step (forward + backward, counted by :class:`torch.utils.flop_counter.FlopCounterMode`), the
  achieved GFLOP/s of the bare step and its fraction of the square float32 matrix-multiply rate
  measured in the same run, and each architecture's bare step relative to the fastest one.

No number from another machine enters: every ratio divides two times measured here, now.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("lemmse.bench_training")

DESCRIPTION = __doc__.split("\n\n", 1)[0].replace("``", "") + """

Prints a Markdown table (and --json writes the rows). Example:
  lemmse bench-train --archs unet resnet patchmlp --steps 60
"""


@dataclass(frozen=True)
class TrainStepRow:
    arch: str
    options: dict
    parameters: int
    flops_per_step: float
    bare_ms: float
    loop_ms: float
    matmul_gflops: float

    @property
    def overhead(self) -> float:
        return self.loop_ms / self.bare_ms

    @property
    def gflops(self) -> float:
        return self.flops_per_step / self.bare_ms / 1e6

    @property
    def fraction_of_matmul(self) -> float:
        return self.gflops / self.matmul_gflops


def step_flops(model, v, sigma) -> float:
    """FLOPs of one forward + backward pass of ``model`` on ``(v, σ)`` (matmuls and convolutions)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        out = model(v, sigma)
        ((out - v) ** 2).mean().backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def bare_step_ms(model, v, sigma, target, steps: int, warmup: int = 5) -> float:
    """Best-of-three mean milliseconds of a bare forward/MSE/backward/AdamW step (the training loop's
    optimizer, :func:`lemmse.training.loop.make_optimizer`, so that the ratio measures the loop alone)."""
    import torch

    from lemmse.training.loop import make_optimizer

    optimizer = make_optimizer(model, lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.mean((model(v, sigma) - target) ** 2).backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps)
    return 1e3 * best


def loop_step_ms(config, images, steps: int) -> float:
    """Milliseconds per step of :func:`lemmse.training.loop.train`, from its own ``stats.jsonl``.

    The first logged window (warm-up) is dropped; the rest give the steady per-step time.
    """
    from lemmse.training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        train(tmp, config, images)
        lines = [json.loads(line) for line in (Path(tmp) / "stats.jsonl").read_text().splitlines()]
    first, last = lines[0], lines[-1]
    return 1e3 * (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])


def measure(arch: str, model_options: dict, *, patch: int, image_shape: tuple[int, int, int],
            batch_size: int, steps: int, matmul_gflops: float, seed: int = 0) -> TrainStepRow:
    """One row: ``arch`` with ``model_options`` over the small preset, everything measured now."""
    import numpy as np
    import torch

    from lemmse.models import count_parameters
    from lemmse.training.config import TrainConfig, resolve_config
    from lemmse.training.loop import model_from_config

    rng = np.random.default_rng(seed)
    images = rng.random((max(64, batch_size), *image_shape), dtype=np.float32)
    log_every = max(1, steps // 4)
    config = TrainConfig(arch=arch, patch=patch, model_options=model_options, steps=steps + log_every,
                         batch_size=batch_size, log_every=log_every, checkpoint_every=10**9,
                         ema_start=0, seed=seed)
    resolved = resolve_config(config, images)
    model = model_from_config(resolved)
    generator = torch.Generator().manual_seed(seed)
    v = torch.rand(batch_size, *image_shape, generator=generator)
    sigma = torch.rand(batch_size, generator=generator)
    target = torch.rand(batch_size, *image_shape, generator=generator)
    flops = step_flops(model, v, sigma)
    bare = bare_step_ms(model, v, sigma, target, steps)
    loop = loop_step_ms(config, images, steps + log_every)
    return TrainStepRow(arch, resolved["model_options"], count_parameters(model), flops, bare, loop,
                        matmul_gflops)


def table(rows: list[TrainStepRow], batch_size: int, patch: int, image_shape) -> str:
    fastest = min(r.bare_ms for r in rows)
    c, h, w = image_shape
    lines = [f"Training step, batch {batch_size} of {c}×{h}×{w}, P = {patch}, "
             f"fp32 matmul {rows[0].matmul_gflops:.0f} GFLOP/s (this run)", "",
             "| arch | parameters | MFLOP/step | bare ms/step | loop ms/step | loop / bare | "
             "bare / fastest | GFLOP/s | of fp32 matmul |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.arch} | {r.parameters:,} | {r.flops_per_step / 1e6:.1f} | {r.bare_ms:.2f} | "
                     f"{r.loop_ms:.2f} | {r.overhead:.2f}× | {r.bare_ms / fastest:.2f}× | {r.gflops:.2f} | "
                     f"{100 * r.fraction_of_matmul:.1f} % |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from lemmse.bench import matmul_rate
    from lemmse.errors import LemmseInputError
    from lemmse.models import ARCHITECTURES

    for arch in args.archs:
        if arch not in ARCHITECTURES:
            raise LemmseInputError(f"--archs: unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    try:
        overrides = json.loads(args.model_options)
    except json.JSONDecodeError as err:
        raise LemmseInputError(f"--model-options is not JSON: {err}") from err
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise LemmseInputError(f"--model-options must map an architecture to its options, got {args.model_options!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (args.channels, args.size, args.size)
    rate = matmul_rate()
    rows = []
    for arch in args.archs:
        rows.append(measure(arch, overrides.get(arch, {}), patch=args.patch, image_shape=shape,
                            batch_size=args.batch_size, steps=args.steps, matmul_gflops=rate))
        log.info("%s: bare %.2f ms/step, loop %.2f ms/step", arch, rows[-1].bare_ms, rows[-1].loop_ms)
    print(table(rows, args.batch_size, args.patch, shape))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) | {"overhead": r.overhead, "gflops": r.gflops}
                                               for r in rows], indent=1))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench-train`` on the top-level ``subparsers``."""
    from lemmse.cli.common import HelpFormatter, add_verbosity_flags

    p = subparsers.add_parser("bench-train", help="time one training step of each architecture (loop vs bare PyTorch)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--archs", nargs="+", default=["unet", "resnet", "patchmlp"], help="architectures to time")
    p.add_argument("--model-options", default="{}",
                   help="JSON: per-architecture option overrides of the small preset (the default config's)")
    p.add_argument("--patch", type=int, default=5, help="receptive field P")
    p.add_argument("--size", type=int, default=16, help="image side H = W")
    p.add_argument("--channels", type=int, default=1, help="image channels C")
    p.add_argument("--batch-size", type=int, default=32, help="samples per step")
    p.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    add_verbosity_flags(p)
    p.set_defaults(func=run)
    return p
