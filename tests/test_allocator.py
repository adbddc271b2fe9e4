"""glibc's malloc keeps freed memory for lemmse's entry points: a warm training step faults no pages.

Each case runs in a fresh interpreter: the thresholds are process-wide and set once.
"""
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt thresholds are glibc's")

# Minor page faults per step of the small ResNet's bare training step (forward, MSE, backward,
# AdamW), after a warm-up, with or without retain_freed_memory().
_FAULTS_PER_STEP = textwrap.dedent("""
    import json, resource, sys
    from lemmse.allocator import retain_freed_memory
    applied = retain_freed_memory() if sys.argv[1] == "retain" else False
    import torch
    from lemmse.models import build_model
    from lemmse.training.loop import make_optimizer
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("resnet", 1, 5)
    optimizer = make_optimizer(model, lr=1e-4)
    v, target, sigma = torch.rand(32, 1, 16, 16), torch.rand(32, 1, 16, 16), torch.rand(32)
    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.mean((model(v, sigma) - target) ** 2).backward()
        optimizer.step()
    for _ in range(10):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        step()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40
    print(json.dumps({"applied": applied, "faults": faults}))
""")


def _clean_env(**settings: str) -> dict:
    """This environment without any malloc tuning of its own, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    return env | settings


def _run(code: str, *args: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_warm_training_step_faults_no_pages_once_freed_memory_is_kept():
    env = _clean_env()
    kept = _run(_FAULTS_PER_STEP, "retain", env=env)
    default = _run(_FAULTS_PER_STEP, "default", env=env)
    assert kept["applied"] is True
    # Measured: ~3 faults a step kept, 700-1 700 with glibc's adaptive defaults.
    assert kept["faults"] <= 20, kept
    assert default["faults"] >= 5 * max(kept["faults"], 10), (default, kept)


@pytest.mark.parametrize("setting", [{"MALLOC_TRIM_THRESHOLD_": "1048576"},
                                     {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1048576"}])
def test_the_users_own_malloc_settings_are_left_alone(setting):
    code = "import json; from lemmse.allocator import retain_freed_memory; print(json.dumps({'applied': retain_freed_memory()}))"
    assert _run(code, env=_clean_env(**setting))["applied"] is False
    assert _run(code, env=_clean_env())["applied"] is True


def test_every_lemmse_command_and_workflow_job_keeps_freed_memory(tmp_path):
    """``lemmse <command>`` (even one that then rejects its input) and ``rules.start``."""
    command = textwrap.dedent("""
        import json, lemmse.allocator as allocator
        from lemmse.cli.main import main
        status = main(["plan", "/no/such/config.yaml"])
        print(json.dumps({"status": status, "applied": allocator._applied}))
    """)
    result = _run(command, env=_clean_env())
    assert result == {"status": 2, "applied": True}

    job = textwrap.dedent(f"""
        import json, types, lemmse.allocator as allocator
        from lemmse.rules import start
        snakemake = types.SimpleNamespace(output=[{str(tmp_path / 'out.txt')!r}], log=[{str(tmp_path / 'job.log')!r}],
                                          threads=1, rule="demo", wildcards={{}}, params=types.SimpleNamespace())
        start(snakemake)
        print(json.dumps({{"applied": allocator._applied}}))
    """)
    assert _run(job, env=_clean_env()) == {"applied": True}
