"""Stop signals (SIGTERM / SIGINT) in the two phases of a run.

- Start-up (model build, restore, compilation): the default action, so a signal ends the
  process at once. Nothing is lost: no step has run, the last checkpoint is the latest.
- Training (:meth:`StopRequest.arm`): the first signal sets a flag that the loop reads after
  every step (agreed across processes, so all of them save the same step together), then it
  checkpoints and exits 0. Pre-emption on TPU / Slurm sends SIGTERM. A second signal ends the
  process at once (the default action again).
"""

from __future__ import annotations

import os
import signal

import jax
import numpy as np
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def default_action() -> None:
    """Start-up: SIGTERM / SIGINT end the process at once (Python's SIGINT handler would only
    raise KeyboardInterrupt after a long compilation returns)."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


class StopRequest:
    def __init__(self, log=print):
        self.signal: int | None = None
        self.log = log

    def arm(self) -> "StopRequest":
        """From now on the first signal requests a checkpoint-and-stop."""
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):  # noqa: ARG002
        if self.signal is not None:  # second signal: end now
            self.log(f"received {signal.Signals(signum).name} again: exiting immediately")
            default_action()
            os.kill(os.getpid(), signum)
            return
        self.log(f"received {signal.Signals(signum).name}: finishing the current step, then checkpointing "
                 "(send it again to exit immediately)")
        self.signal = signum

    def requested(self) -> bool:
        """True when any process received a stop signal (a collective with >1 processes)."""
        local = self.signal is not None
        if jax.process_count() == 1:
            return local
        return bool(np.any(multihost_utils.process_allgather(np.asarray([local]))))
