"""Time limits and pre-emption: a stop signal checkpoints, the next attempt resumes bitwise.

A real training process (a child Python) gets SIGUSR1 (SLURM's warning before the time limit)
or SIGTERM (the time limit itself, pre-emption) from outside; it must save ``model.pt`` at the
step it was in, exit with status 75, and a resumed run must end bitwise equal (CPU) to an
uninterrupted one. The child pauses at a fixed step until the signal has arrived, so the test
does not depend on timing.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lemmse.training import CHECKPOINT, STATS, TrainConfig, TrainingInterrupted, load_checkpoint, train
from lemmse.training import loop as loop_module

REPO = Path(__file__).resolve().parents[1]
STEPS, PAUSE_AT = 30, 13  # PAUSE_AT is not a multiple of checkpoint_every: the signal forces the save

# The child: a tiny ResNet run that, at step PAUSE_AT, blocks the stop signals, writes `paused`,
# waits (at most 120 s) until one is pending, and unblocks it: the kernel then delivers it to the
# handler train() installed, exactly as if it had arrived during that step.
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    import numpy as np, torch
    from lemmse.training import TrainConfig, TrainingInterrupted, train
    from lemmse.training import loop

    torch.set_num_threads(1)
    run_dir, pause_at = Path(sys.argv[1]), int(sys.argv[2])
    original = loop._update_ema
    def pausing_update(ema, model, step, config):
        original(ema, model, step, config)
        if step == pause_at:
            stops = set(loop.STOP_SIGNALS)
            signal.pthread_sigmask(signal.SIG_BLOCK, stops)
            (run_dir / "paused").write_text(str(step))
            deadline = time.monotonic() + 120
            while not stops & signal.sigpending() and time.monotonic() < deadline:
                time.sleep(0.01)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    loop._update_ema = pausing_update
    images = np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)
    config = TrainConfig(**CONFIG)
    try:
        train(run_dir, config, images, resume=True)
    except TrainingInterrupted as stopped:
        print(stopped, flush=True)
        sys.exit(stopped.exit_code)
    """
)
CONFIG = dict(arch="resnet", patch=3, model_options={"width": 8}, sigma_min=0.0, sigma_max=1.0, steps=STEPS,
              batch_size=4, ema_start=3, ema_every=2, ema_decay=0.9, checkpoint_every=10, log_every=3, seed=5)


def _images() -> np.ndarray:
    return np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)


def _run_child(run_dir: Path, signum: int | None) -> subprocess.CompletedProcess:
    run_dir.mkdir(parents=True, exist_ok=True)
    script = CHILD.replace("TrainConfig(**CONFIG)", f"TrainConfig(**{CONFIG!r})")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen([sys.executable, "-c", script, str(run_dir), str(PAUSE_AT if signum else -1)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if signum is not None:
        deadline = time.monotonic() + 300
        while not (run_dir / "paused").exists():
            assert child.poll() is None, child.communicate()[0]
            assert time.monotonic() < deadline, "the child never reached the pause step"
            time.sleep(0.02)
        child.send_signal(signum)
    out, _ = child.communicate(timeout=300)
    return subprocess.CompletedProcess(child.args, child.returncode, out)


def _assert_bitwise_equal(a: dict, b: dict) -> None:
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name])), f"adam {k}.{name}"
    assert a["step"] == b["step"] == STEPS


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / STATS).read_text().splitlines()]
    return [(row["step"], row["loss"]) for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM], ids=["USR1", "TERM"])
def test_signal_checkpoints_exits_75_and_the_resumed_run_is_bitwise_equal(signum, tmp_path):
    full = _run_child(tmp_path / "full", None)
    assert full.returncode == 0, full.stdout

    first = _run_child(tmp_path / "cut", signum)
    assert first.returncode == TrainingInterrupted.exit_code == 75, first.stdout
    assert f"{signal.Signals(signum).name} received: checkpoint of step {PAUSE_AT}" in first.stdout
    assert load_checkpoint(tmp_path / "cut")["step"] == PAUSE_AT  # saved at the signal, not at step 10
    assert max(step for step, _ in _losses(tmp_path / "cut")) <= PAUSE_AT

    (tmp_path / "cut" / "paused").unlink()
    second = _run_child(tmp_path / "cut", None)  # the retry: resumes from step PAUSE_AT
    assert second.returncode == 0, second.stdout
    _assert_bitwise_equal(load_checkpoint(tmp_path / "cut"), load_checkpoint(tmp_path / "full"))
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")


@pytest.mark.usefixtures("one_torch_thread")
def test_signal_in_process_raises_after_the_checkpoint_and_restores_handlers(tmp_path):
    """The same path in this process: handler installed only while training, previous one back after."""
    config = TrainConfig(**{**CONFIG, "steps": 8, "checkpoint_every": 8})
    calls = []
    original = loop_module._update_ema

    def signal_at_step_3(ema, model, step, cfg):
        original(ema, model, step, cfg)
        if step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)  # delivered to the handler train() installed
            calls.append(step)

    before = signal.getsignal(signal.SIGUSR1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop_module, "_update_ema", signal_at_step_3)
        with pytest.raises(TrainingInterrupted, match="SIGUSR1 received: checkpoint of step 3") as info:
            train(tmp_path, config, _images())
    assert info.value.step == 3 and calls == [3]
    assert signal.getsignal(signal.SIGUSR1) is before
    assert load_checkpoint(tmp_path)["step"] == 3
    assert train(tmp_path, config, _images(), resume=True).step == 8


def test_every_checkpoint_tensor_loads_on_the_cpu(tmp_path):
    """model.pt loads with map_location='cpu' and weights_only: every tensor it holds is on the CPU."""
    config = TrainConfig(**{**CONFIG, "steps": 2, "checkpoint_every": 2})
    train(tmp_path, config, _images(), device="cuda" if torch.cuda.is_available() else "cpu")
    state = load_checkpoint(tmp_path, map_location="cpu")
    tensors = []

    def walk(value):
        if isinstance(value, torch.Tensor):
            tensors.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(state)
    assert len(tensors) > 3 * len(state["model"])  # weights, EMA, Adam moments, RNG
    assert {t.device.type for t in tensors} == {"cpu"}
    raw = torch.load(tmp_path / CHECKPOINT, map_location="cpu", weights_only=True)
    assert raw["step"] == 2


def test_cuda_determinism_flags_are_set_for_cuda_only(monkeypatch):
    """set_precision('cuda') switches on deterministic algorithms, cuDNN determinism and the cuBLAS
    workspace (no GPU needed to set them); the CPU leaves global determinism alone."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    try:
        torch.use_deterministic_algorithms(False)
        loop_module.set_precision("cpu")
        assert not torch.are_deterministic_algorithms_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        loop_module.set_precision("cuda")
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]
