"""Logical-axis annotation of parameters.

Every parameter is created with logical axis names (``"embed"``, ``"mlp"`` ...); the mapping
to mesh axes (``data`` / ``fsdp`` / ``tensor``) lives in the config's rules and is applied by
``mimaface_jax.parallel``. Eager sharding is off: models are built abstractly or unsharded and
placed by a jitted init with explicit out-shardings (no mesh needed to build a module).
"""

from __future__ import annotations

from typing import Callable

from flax import nnx

# The vocabulary of logical parameter axes. Keep ``parallel/rules.py`` in sync.
PARAM_AXES = (
    "embed",      # model width entering a projection (d_in of linear layers)
    "mlp",        # feed-forward hidden width
    "heads",      # attention q/k/v width (num_heads * head_dim)
    "conv_in",    # input channels of a conv kernel
    "conv_out",   # output channels of a conv kernel
    "norm",       # scale/bias of norms, biases
    "vocab",      # positions / class tokens / other small tables
    None,         # never sharded (kernel height/width ...)
)


def logical(init: Callable, *names: str | None) -> Callable:
    """Wraps an initializer so that the created ``nnx.Param`` carries logical axis names."""
    for name in names:
        if name not in PARAM_AXES:
            raise ValueError(f"unknown logical axis {name!r}; known: {PARAM_AXES}")
    return nnx.with_partitioning(init, tuple(names), eager_sharding=False)
