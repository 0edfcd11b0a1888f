"""SIGTERM / SIGINT -> finish the current step, save a checkpoint, exit 0.

Preemption on TPU / Slurm sends SIGTERM. The handler only sets a flag; the loop checks it
after every step (agreed across processes, so all of them save the same step together).
"""

from __future__ import annotations

import signal

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopRequest:
    def __init__(self, log=print):
        self.signal: int | None = None
        self.log = log

    def install(self) -> "StopRequest":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):  # noqa: ARG002
        if self.signal is None:
            self.log(f"received {signal.Signals(signum).name}: finishing the current step, then checkpointing")
        self.signal = signum

    def requested(self) -> bool:
        """True when any process received a stop signal (a collective with >1 processes)."""
        local = self.signal is not None
        if jax.process_count() == 1:
            return local
        return bool(np.any(multihost_utils.process_allgather(np.asarray([local]))))
