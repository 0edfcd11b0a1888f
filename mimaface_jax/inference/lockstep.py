"""Host-side state of B videos generated in lockstep by ``ClipGenerator.batch_clips``.

``VideoJob`` is one video's inputs; ``ContextWindow`` is the rolling ICA context of all B
videos (the last K generated frames' clean latents, condition renders and motion, or the
source frame as the anchor of the first clip). The B videos have the same length T, so every
clip of the batch has the same start and the same number of real frames n: one ``num_context``
and one ``num_current`` per clip, repeated over the batch.

Data order of the context arrays (``clip_layout.py``): the most recent frame last; slots before
the used ones hold stale values that the generation function masks out.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass
class VideoJob:
    """One video of a batch.

    source (H, W, 3) uint8 (the model's crop), identity (E,), motion (T, D) float32,
    render(start, stop) -> condition renders (stop - start, H, W, 3) uint8 of those frames;
    with ``source_as_context`` the source's own motion (D,) and render (H, W, 3) uint8;
    ``seed`` None: the generator settings' seed.
    """

    source: np.ndarray
    identity: np.ndarray
    motion: np.ndarray
    render: Callable[[int, int], np.ndarray]
    source_motion: np.ndarray | None = None
    source_condition: np.ndarray | None = None
    seed: int | None = None


def checked_motion(job: VideoJob, resolution: int, motion_size: int, needs_anchor: bool) -> np.ndarray:
    """The job's motion as (T, D) float32 after checking the job's inputs (ValueError naming the
    bad one)."""
    r = resolution
    motion = np.asarray(job.motion, np.float32)
    if motion.ndim != 2 or motion.shape[1] != motion_size or motion.shape[0] == 0:
        raise ValueError(f"motion must be (T >= 1, {motion_size}), got {motion.shape}")
    if not np.isfinite(motion).all():
        raise ValueError("motion has NaN/inf entries (frames without a face must be filled first)")
    if job.source.shape != (r, r, 3) or job.source.dtype != np.uint8:
        raise ValueError(f"source must be ({r}, {r}, 3) uint8 (the model's crop), got {job.source.shape} "
                         f"{job.source.dtype}")
    if needs_anchor and (job.source_motion is None or job.source_condition is None):
        raise ValueError("source_as_context needs the source frame's motion and condition render")
    return motion


class ContextWindow:
    """The ICA context inputs of B videos' next clip (``generate``'s ``context_*`` /
    ``num_context`` / ``context_is_source``); K = 0 gives none."""

    def __init__(self, batch: int, k: int, resolution: int, latent_hw: int, latent_channels: int,
                 motion_size: int):
        r = resolution
        self.k = k
        self.latents = np.zeros((batch, k, latent_hw, latent_hw, latent_channels), np.float32)
        self.condition = np.zeros((batch, k, r, r, 3), np.uint8)
        self.motion = np.zeros((batch, k, motion_size), np.float32)
        self.have = 0             # context frames available (the same for every video)
        self.is_source = False    # the next clip's context is the source anchor

    def anchor(self, source_condition: np.ndarray, source_motion: np.ndarray) -> None:
        """The source frame as every context slot of the first clip: condition (B, H, W, 3)
        uint8, motion (B, D); its latents are encoded inside the generation function."""
        self.condition[:] = source_condition[:, None]
        self.motion[:] = np.asarray(source_motion, np.float32)[:, None]
        self.have, self.is_source = self.k, True

    def inputs(self) -> dict:
        b = self.latents.shape[0]
        return {"context_condition": self.condition, "context_motion": self.motion,
                "context_latents": self.latents, "num_context": np.full((b,), self.have, np.int32),
                "context_is_source": np.full((b,), self.is_source)}

    def advance(self, latents: np.ndarray, condition: np.ndarray, motion: np.ndarray) -> None:
        """The n frames just generated (B, n, ...) become the newest context frames."""
        k = self.k
        if k == 0:
            return
        self.latents = np.concatenate([self.latents, latents], 1)[:, -k:]
        self.condition = np.concatenate([self.condition, condition], 1)[:, -k:]
        self.motion = np.concatenate([self.motion, motion], 1)[:, -k:]
        if self.is_source:  # the anchor's slots hold the source latents only inside the call
            self.have, self.is_source = 0, False
        self.have = min(k, self.have + latents.shape[1])
