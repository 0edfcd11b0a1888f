"""Runs the grain pipeline in a fresh process for tests/data/test_pipeline.py.

python pipeline_proc.py PATH OUT.npz --batches N [--shard I C] [--epochs E]
       [--workers W] [--save-state-after K STATE] [--restore-state STATE]
Writes the batches' arrays (stacked per key) to OUT.npz.
"""

from __future__ import annotations

import argparse

import numpy as np

from mimaface_jax.data.pipeline import (DatasetSource, PipelineConfig, make_iterator,
                                        restore_state, state_to_bytes)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("out")
    p.add_argument("--batches", type=int, required=True)
    p.add_argument("--shard", type=int, nargs=2, default=(0, 1))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--save-state-after", nargs=2, default=None)
    p.add_argument("--restore-state", default=None)
    a = p.parse_args()
    config = PipelineConfig(sources=(DatasetSource(a.path, "train"),), batch_size=a.batch_size,
                            num_frames=4, k_max=2, seed=7, num_epochs=a.epochs,
                            worker_count=a.workers, shard_index=a.shard[0],
                            shard_count=a.shard[1], drop_remainder=a.epochs is None,
                            render_condition=True)
    it = make_iterator(config)
    if a.restore_state:
        with open(a.restore_state, "rb") as f:
            restore_state(it, f.read())
    batches = []
    for i in range(a.batches):
        try:
            batches.append(next(it))
        except StopIteration:
            break
        if a.save_state_after and i + 1 == int(a.save_state_after[0]):
            with open(a.save_state_after[1], "wb") as f:
                f.write(state_to_bytes(it))
    arrays = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]} if batches else {}
    np.savez(a.out, num_batches=len(batches), **arrays)
    if hasattr(it, "close"):
        it.close()
    del it


if __name__ == "__main__":
    main()
