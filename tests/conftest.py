"""Test set-up: 8 fake CPU devices (sharding tests), fp32 matmuls, no GPU."""

import os
import sys
from pathlib import Path

# Shared test helpers (tiny_checkpoints.py ...) import by module name under --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).parent))

from xla_flags import flags  # noqa: E402

os.environ.setdefault("XLA_FLAGS", flags(8))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
