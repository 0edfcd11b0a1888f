"""Fault injection for the training tests (``config.debug``), kept out of the loop's body.

Every hook is inert with the default config. The loop calls them at fixed points:
``batch`` before a step, ``after_step`` after it, ``after_save`` after the step's checkpoint
decision. They make a test's failure reproducible at a known step: a NaN batch, a slow loop
(signal tests), a pause until a signal (kill tests), an exception right after a save.
"""

from __future__ import annotations

import time

import numpy as np


class InjectedFault(RuntimeError):
    """The exception ``debug.raise_after_step`` raises."""


class FaultHooks:
    def __init__(self, debug):
        self.nan_at_step = int(debug.nan_at_step)
        self.sleep_per_step = float(debug.sleep_per_step)
        self.pause_after_step = int(debug.pause_after_step)
        self.raise_after_step = int(debug.raise_after_step)

    def batch(self, step: int, batch: dict) -> dict:
        """``debug.nan_at_step``: the batch's float inputs become NaN, as a broken record would
        give (the compiled step is the normal one)."""
        if step != self.nan_at_step:
            return batch
        return {k: np.full_like(v, np.nan) if np.issubdtype(v.dtype, np.floating) else v for k, v in batch.items()}

    def after_step(self, step: int) -> None:
        if self.sleep_per_step:
            time.sleep(self.sleep_per_step)

    def pauses_after(self, step: int) -> bool:
        """``debug.pause_after_step``: the loop holds after this step until a stop signal."""
        return step == self.pause_after_step

    def after_save(self, step: int) -> None:
        """``debug.raise_after_step``: an exception right after that step's (async) save, as a
        failing sample writer would raise."""
        if step == self.raise_after_step:
            raise InjectedFault(f"debug.raise_after_step={step}: injected exception after the save of step {step}")
