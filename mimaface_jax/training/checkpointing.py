"""Orbax checkpoints of a training run: ``<workdir>/checkpoints/<step>/``.

Items per step: ``state`` (the train state: params, optimizer state, EMA, step, RNG; every
process writes its shards), ``data`` (JSON: the data iterator state of EVERY process, gathered
to process 0), ``config`` (JSON). Saves are asynchronous; ``max_to_keep`` and ``keep_period``
(keep every step divisible by it as well) come from the config. A non-finite state is never
passed here (the loop stops first).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

STATE, DATA, CONFIG = "state", "data", "config"


def checkpoint_dir(workdir: str | os.PathLike) -> Path:
    return Path(workdir).absolute() / "checkpoints"


def make_manager(directory: str | os.PathLike, config) -> ocp.CheckpointManager:
    c = config.checkpoint
    options = ocp.CheckpointManagerOptions(
        max_to_keep=c.max_to_keep,
        keep_period=c.keep_period or None,
        enable_async_checkpointing=bool(c.async_save),
        create=True,
    )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options,
                                 item_names=(STATE, DATA, CONFIG))


def gather_data_states(local_state: dict) -> list[dict]:
    """Every process's iterator state (a JSON-able dict), in process order."""
    if jax.process_count() == 1:
        return [json.loads(json.dumps(local_state))]
    blob = np.frombuffer(json.dumps(local_state, sort_keys=True).encode("utf-8"), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.asarray([blob.size], np.int64))).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[:blob.size] = blob
    every = np.asarray(multihost_utils.process_allgather(padded))  # (P, max length)
    return [json.loads(bytes(row[:n]).decode("utf-8")) for row, n in zip(every, lengths)]


def save(manager: ocp.CheckpointManager, step: int, state: dict, data_state: dict, config_json: dict,
         force: bool = False) -> bool:
    data = {"processes": gather_data_states(data_state)}
    return manager.save(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state),
        DATA: ocp.args.JsonSave(data),
        CONFIG: ocp.args.JsonSave(config_json),
    }), force=force)


def restore(manager: ocp.CheckpointManager, step: int, state_abstract: dict) -> tuple[dict, dict]:
    """(train state placed like ``state_abstract``, this process's data iterator state)."""
    restored = manager.restore(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardRestore(state_abstract),
        DATA: ocp.args.JsonRestore(),
    }))
    processes = restored[DATA]["processes"]
    if len(processes) != jax.process_count():
        # The synthetic source's state is global (every process holds the same one), so a
        # different process count resumes exactly; per-process (grain) states cannot be mapped.
        if any(p != processes[0] for p in processes):
            raise ValueError(f"checkpoint {step}: data states of {len(processes)} processes differ and "
                             f"this run has {jax.process_count()}; cannot map them")
        return restored[STATE], processes[0]
    return restored[STATE], processes[jax.process_index()]


def restore_params_only(directory: str | os.PathLike, weights: str = "ema") -> tuple[int, dict]:
    """(step, {name: numpy array}) of the latest checkpoint's model parameters: the frozen ones
    plus the trained ones, as their EMA (``weights="ema"``; the raw ones when the run kept no
    EMA) or raw (``"raw"``).

    Starts stage 2 from a stage-1 run: the structure is read from the checkpoint itself and
    the arrays come back whole on the host (fine up to SD-1.5 size; a sharded partial restore
    would be the next step for larger models).
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"restore_params_only: weights={weights!r}, expected 'ema' or 'raw'")
    directory = Path(directory).expanduser().absolute()
    if (directory / "checkpoints").is_dir():
        directory = directory / "checkpoints"
    with ocp.CheckpointManager(directory, item_names=(STATE, DATA, CONFIG)) as manager:
        step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{directory} holds no finished checkpoint (init.stage1_checkpoint)")
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(directory / str(step) / STATE)
    trained = state["ema"] if weights == "ema" and state.get("ema") else state["trainable"]
    params = {**state["frozen"], **trained}
    return step, {k: np.asarray(v) for k, v in params.items()}
