"""parallel: device mesh, logical-axis rules, sharded init and activation sharding hints."""

from mimaface_jax.parallel.mesh import MESH_AXES, MeshConfig, make_mesh
from mimaface_jax.parallel.rules import (
    ACTIVATION_RULES,
    DEFAULT_RULES,
    PARAM_RULES,
    logical_to_mesh,
    merge_rules,
)
from mimaface_jax.parallel.sharding import (
    batch_sharding,
    constrain,
    shard_batch,
    sharded_init,
    state_shardings,
    unannotated_params,
    use_rules,
)

__all__ = [
    "ACTIVATION_RULES",
    "DEFAULT_RULES",
    "MESH_AXES",
    "MeshConfig",
    "PARAM_RULES",
    "batch_sharding",
    "constrain",
    "logical_to_mesh",
    "make_mesh",
    "merge_rules",
    "shard_batch",
    "sharded_init",
    "state_shardings",
    "unannotated_params",
    "use_rules",
]
