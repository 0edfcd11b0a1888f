"""Metric writers and periodic actions (progress with steps/s and ETA, a profiler trace).

``JsonlConsoleWriter`` (always available): one JSON line per write in
``<workdir>/metrics.jsonl`` and a console line. When TensorFlow is installed, clu's TensorBoard
writer is added next to it (``make_writer`` says in the log which writers are used). Only
process 0 writes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Protocol


class MetricWriter(Protocol):
    def write_scalars(self, step: int, scalars: dict[str, float]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _json_value(v):
    v = float(v)
    return v if math.isfinite(v) else str(v)


class JsonlConsoleWriter:
    def __init__(self, workdir: str | Path, log=print, filename: str = "metrics.jsonl"):
        self.path = Path(workdir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        self.log = log

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        record = {"step": int(step), **{k: _json_value(v) for k, v in scalars.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items() if k != "step")
        self.log(f"step {step}: {shown}")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class NullWriter:
    def write_scalars(self, step, scalars):
        pass

    def flush(self):
        pass

    def close(self):
        pass


class MultiWriter:
    def __init__(self, writers):
        self.writers = list(writers)

    def write_scalars(self, step, scalars):
        for w in self.writers:
            w.write_scalars(step, scalars)

    def flush(self):
        for w in self.writers:
            w.flush()

    def close(self):
        for w in self.writers:
            w.close()


def quiet_tensorflow_startup() -> None:
    """Before TensorFlow loads (clu's writer, tfds or MediaPipe import it): no C++ INFO lines
    (``TF_CPP_MIN_LOG_LEVEL=2``: CPU features) and no oneDNN notice (``TF_ENABLE_ONEDNN_OPTS=0``:
    TensorFlow only writes event files here, it computes nothing), unless the user set them.
    Users read those start-up lines as problems; TensorFlow's warnings and errors still show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow (for clu's writer) after :func:`quiet_tensorflow_startup`."""
    if "tensorflow" in sys.modules:
        return
    quiet_tensorflow_startup()
    import tensorflow  # noqa: F401


def make_writer(workdir: str | Path, is_main: bool, log=print, tensorboard: bool = True) -> MetricWriter:
    """JSONL + console always; clu TensorBoard too when asked and TensorFlow is importable (logged)."""
    if not is_main:
        return NullWriter()
    writers = [JsonlConsoleWriter(workdir, log)]
    if not tensorboard:
        log(f"metrics: {Path(workdir) / 'metrics.jsonl'} + console (train.tensorboard=False)")
    elif importlib.util.find_spec("tensorflow") is not None:
        import_tensorflow_quietly()
        from clu import metric_writers  # needs TensorFlow

        writers.append(metric_writers.create_default_writer(str(workdir), just_logging=False))
        log(f"metrics: {Path(workdir) / 'metrics.jsonl'} + console + TensorBoard (clu) in {workdir}")
    else:
        log(f"metrics: {Path(workdir) / 'metrics.jsonl'} + console; TensorFlow is not installed, "
            "so no TensorBoard writer (bash scripts/install.sh tf adds clu's)")
    return MultiWriter(writers)


class Progress:
    """Steps/s and ETA from wall time between reports (the first, compiling step excluded)."""

    def __init__(self, total_steps: int):
        self.total = total_steps
        self._t = None
        self._step = None

    def update(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        out = {}
        if self._t is not None and step > self._step:
            rate = (step - self._step) / max(now - self._t, 1e-9)
            out = {"steps_per_sec": rate, "eta_min": (self.total - step) / rate / 60.0}
        self._t, self._step = now, step
        return out


class ProfileTrace:
    """A ``jax.profiler`` trace of steps ``first .. first + num - 1`` (1-based) into
    ``<workdir>/profile`` (TensorBoard's profile plugin / XProf read it). ``first = 0``: off.
    Process 0 only. ``before(step)`` / ``after(step, state)`` bracket each step, where ``step``
    counts the steps done."""

    def __init__(self, workdir: str | Path, first: int, num: int, enabled: bool, log=print):
        self.dir = Path(workdir) / "profile"
        self.first, self.last = first, first + num - 1
        self.enabled = enabled and first > 0
        self.log = log
        self.active = False

    def before(self, step: int) -> None:
        if self.enabled and step + 1 == self.first:
            import jax

            jax.profiler.start_trace(str(self.dir))
            self.active = True

    def after(self, step: int, state) -> None:
        if self.active and step >= self.last:
            self.close(step, state)

    def close(self, step: int, state) -> None:
        """Ends a trace still running (the run stopped inside the window): it is kept."""
        if self.active:
            import jax

            jax.block_until_ready(state)
            jax.profiler.stop_trace()
            self.active = False
            self.log(f"profile: steps {self.first}-{step} traced into {self.dir}")
