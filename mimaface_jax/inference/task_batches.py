"""Evaluation tasks generated B at a time, data parallel (``evaluate``).

Tasks of the same length are grouped into batches of B (``jax.device_count()`` in ``evaluate``,
a multiple of the mesh's batch split, so each device generates B / devices of the videos); the
last batch of a length is padded by repeating its last task, and the padding's frames are
dropped. Every batch of one length has the same shapes: the clip function compiles once per
length. Task i uses its own seed, so its frames do not depend on how the tasks are batched
(``ClipGenerator.batch_clips``).
"""

from __future__ import annotations

import time
from typing import Iterator, Sequence

import numpy as np

from mimaface_jax.inference.lockstep import VideoJob


def task_batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Task indices grouped by length (lengths in first-seen order, tasks in their order) into
    batches of at most ``size``: [3, 5, 3], size 2 -> [[0, 2], [1]]."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    by_length: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        by_length.setdefault(int(length), []).append(index)
    return [group[i:i + size] for group in by_length.values() for i in range(0, len(group), size)]


def task_job(task: dict, seed: int) -> VideoJob:
    """A ``sample_tasks`` / ``pair_tasks`` task as the generator's input."""
    condition = task["condition"]
    return VideoJob(task["source"], task["identity"], task["motion"], lambda a, b: condition[a:b],
                    task["source_motion"], task["source_condition"], seed)


def generate(generator, tasks: Sequence[dict], seeds: Sequence[int], batches: list[list[int]], size: int, *,
             context: bool = True) -> Iterator[tuple[list[int], list[np.ndarray], float]]:
    """Per batch of ``batches``: (its task indices, their frames (T, H, W, 3) uint8, seconds)."""
    for indices in batches:
        jobs = [task_job(tasks[i], seeds[i]) for i in indices]
        jobs += [jobs[-1]] * (size - len(jobs))  # padding: generated, then dropped
        t0 = time.perf_counter()
        frames = generator.videos(jobs, context=context)                        # (size, T, H, W, 3)
        yield indices, list(frames[:len(indices)]), time.perf_counter() - t0
