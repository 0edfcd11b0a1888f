"""Training program: ``python -m mimaface_jax.train --config configs/tiny.py:image --workdir DIR``.

``--config.a.b=value`` overrides any key; keys that ``configs/base.py`` does not define are
errors (the config is locked), as are inconsistent values (``config_validation``), all before
anything is compiled. A workdir that already holds a checkpoint resumes from it.
Multi-process (non-TPU): ``--coordinator host:port --num_processes N --process_id i``.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file (configs/*.py[:arg])",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: checkpoints, metrics, samples")
_COORDINATOR = flags.DEFINE_string("coordinator", "", "host:port of process 0 (multi-process, non-TPU)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "number of processes (with --coordinator)")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "this process's id (with --coordinator)")
_COMPILE_CACHE = flags.DEFINE_string("compile_cache", "", "persistent XLA compilation cache folder "
                                     "(also read from JAX_COMPILATION_CACHE_DIR)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # TensorFlow (imported by clu's writer, tfds or MediaPipe when installed) logs INFO lines
    # at start-up (oneDNN, CPU features) that read like problems; warnings and errors stay.
    from mimaface_jax.training.metrics import quiet_tensorflow_startup

    quiet_tensorflow_startup()
    import jax
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save step at INFO
    if _COMPILE_CACHE.value:
        jax.config.update("jax_compilation_cache_dir", _COMPILE_CACHE.value)
    from mimaface_jax.training import multihost

    multihost.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from mimaface_jax.config_validation import ConfigError
    from mimaface_jax.importers.pretrained_store import PretrainedStoreError
    from mimaface_jax.training import loop

    try:
        return loop.run(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, PretrainedStoreError) as err:
        # config / data / pretrained-store problems: the message says which key and what to
        # do; a traceback would only hide it
        print(f"[train] error: {err}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    app.run(main)
