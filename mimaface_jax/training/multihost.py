"""Multi-process set-up: ``jax.distributed.initialize`` and who writes what.

On a TPU pod ``jax.distributed.initialize()`` finds everything itself. Elsewhere (multi-node
GPU, the localhost CPU test) the coordinator address, the number of processes and this
process's id come from flags or from the environment (``MIMAFACE_COORDINATOR``,
``MIMAFACE_NUM_PROCESSES``, ``MIMAFACE_PROCESS_ID``; under Slurm jax reads ``SLURM_*``
itself). Only process 0 writes logs, metrics and samples; every process writes its
checkpoint shards.
"""

from __future__ import annotations

import os

import jax


def initialize(coordinator: str = "", num_processes: int = 0, process_id: int = -1,
               local_device_count: int = 0, log=print) -> None:
    """Calls ``jax.distributed.initialize`` when a multi-process run is asked for."""
    coordinator = coordinator or os.environ.get("MIMAFACE_COORDINATOR", "")
    num_processes = num_processes or int(os.environ.get("MIMAFACE_NUM_PROCESSES", "0"))
    if process_id < 0:
        process_id = int(os.environ.get("MIMAFACE_PROCESS_ID", "-1"))
    on_slurm = "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1
    on_tpu_pod = "TPU_WORKER_HOSTNAMES" in os.environ or "MEGASCALE_COORDINATOR_ADDRESS" in os.environ
    if coordinator:
        if num_processes < 1 or process_id < 0:
            raise ValueError("multihost: --coordinator needs --num_processes and --process_id "
                             "(or MIMAFACE_NUM_PROCESSES / MIMAFACE_PROCESS_ID)")
        kwargs = {}
        if local_device_count:
            kwargs["local_device_ids"] = list(range(local_device_count))
        jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id, **kwargs)
    elif on_slurm or on_tpu_pod:
        jax.distributed.initialize()
    else:
        return
    log(f"multihost: process {jax.process_index()}/{jax.process_count()}, "
        f"{jax.local_device_count()} local / {jax.device_count()} global devices")


def is_main() -> bool:
    return jax.process_index() == 0
