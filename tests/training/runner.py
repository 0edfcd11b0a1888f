"""Helpers of the training tests: run ``python -m mimaface_jax.train`` as a subprocess.

Every run uses ``configs/tiny.py:image_min`` (or ``video_min``): the smallest model with every
part, 32x32, batch 4, 12 steps, checkpoints every 4. Runs that must share a compiled step use
the same config values that enter the step (model, batch, optimizer schedule: keep
``train.num_steps`` equal), so that only the first one compiles and the others load it from
the session's persistent XLA cache. XLA's CPU backend optimisation is turned down for the
tests (compile time 3x shorter; every run of a comparison uses the same flags).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "tiny.py")
from xla_flags import flags  # tests/ is on sys.path (tests/conftest.py)


def load_config(name, *args):
    """``configs/<name>.py``'s ``get_config(*args)`` (config files are loaded by path)."""
    from mimaface_jax.config_files import load_config as load_config_file

    return load_config_file(REPO / "configs" / f"{name}.py", *args)


def command(workdir, *overrides, variant="image_min", extra_flags=(), tensorboard=False):
    """The trainer's command line. TensorBoard is off unless asked for: importing TensorFlow
    (clu's writer) costs each run ~10 s, and only ``test_periodic_actions`` looks at it."""
    return [sys.executable, "-m", "mimaface_jax.train", f"--config={TINY}:{variant}", f"--workdir={workdir}",
            f"--config.train.tensorboard={tensorboard}", *overrides, *extra_flags]


def env(cache_dir, devices=1):
    e = dict(os.environ)
    e["XLA_FLAGS"] = flags(devices)
    e["JAX_PLATFORMS"] = "cpu"
    e["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    e["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    e["PYTHONPATH"] = str(REPO)
    return e


def run(cmd, cache_dir, devices=1, timeout=420):
    return subprocess.run(cmd, env=env(cache_dir, devices), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def start(cmd, cache_dir, devices=1, log_path=None, extra_env=None):
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    e = env(cache_dir, devices)
    e.update(extra_env or {})
    return subprocess.Popen(cmd, env=e, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, proc, timeout=420, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {what}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def output(result) -> str:
    return result.stdout[-3000:] + result.stderr[-3000:]


def metrics(workdir) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def losses(workdir) -> dict[int, float]:
    """step -> loss (a step logged twice, e.g. redone after a kill, must agree)."""
    out: dict[int, float] = {}
    for r in metrics(workdir):
        if "loss" in r and "non_finite" not in r:
            if r["step"] in out:
                assert out[r["step"]] == r["loss"], f"step {r['step']} logged with two losses"
            out[r["step"]] = r["loss"]
    return out


def finished_steps(workdir) -> list[int]:
    d = Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def load_state(workdir, step) -> dict:
    """The saved train state of a step as numpy arrays (structure read from the checkpoint)."""
    import jax
    import orbax.checkpoint as ocp

    path = Path(workdir).absolute() / "checkpoints" / str(step) / "state"
    with ocp.StandardCheckpointer() as ckpt:
        restored = ckpt.restore(path)
    return jax.tree.map(np.asarray, restored)


def load_data_state(workdir, step) -> dict:
    path = Path(workdir).absolute() / "checkpoints" / str(step) / "data" / "metadata"
    return json.loads(path.read_text())
