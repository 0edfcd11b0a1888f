"""Placing NNX states and batches on a mesh, and activation sharding hints.

- :func:`state_shardings`: ``NamedSharding`` for every variable of an (abstract) NNX state,
  from its logical axis names (``partitioning.logical``) and the rules.
- :func:`sharded_init`: builds a model under ``jax.jit`` with those shardings as outputs, so
  parameters are born sharded (no full copy on one device).
- :func:`shard_batch`: host-local numpy batch -> global arrays split over ``("data", "fsdp")``.
- :func:`constrain`: ``with_sharding_constraint`` by logical names under the active mesh and
  rules (:func:`use_rules`); a no-op when no mesh is set, so modules run unsharded in tests.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mimaface_jax.parallel.rules import DEFAULT_RULES, logical_to_mesh, normalize_rules

_ACTIVE_RULES: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "mimaface_sharding_rules", default=None
)


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def logical_axes(variable: nnx.Variable) -> tuple[str | None, ...] | None:
    """The logical axis names a variable was created with (``None`` if not annotated)."""
    names = variable.get_metadata().get("out_sharding")
    return tuple(names) if names else None


def state_shardings(abstract_state: Any, mesh: Mesh, rules: Iterable[Sequence] = DEFAULT_RULES):
    """A pytree like ``abstract_state`` (an ``nnx.State``) with a ``NamedSharding`` per variable.

    Variables without logical names (RNG keys / counts, unannotated params) are replicated;
    see :func:`unannotated_params` to check that no large parameter is left so.
    """
    rules = tuple(rules)
    normalize_rules(rules)  # validate once, before mapping

    def sharding_of(variable: nnx.Variable) -> nnx.Variable:
        names = logical_axes(variable)
        shape = tuple(variable.shape)
        spec = PartitionSpec() if names is None else logical_to_mesh(names, shape, mesh.shape, rules)
        return variable.replace(NamedSharding(mesh, spec))

    return jax.tree.map(sharding_of, abstract_state, is_leaf=_is_variable)


def unannotated_params(abstract_state: Any) -> list[str]:
    """Paths of ``nnx.Param`` arrays (ndim >= 1) that carry no logical axis names."""
    paths = []
    for path, variable in jax.tree_util.tree_flatten_with_path(
        abstract_state, is_leaf=_is_variable
    )[0]:
        if isinstance(variable, nnx.Param) and variable.ndim >= 1 and logical_axes(variable) is None:
            paths.append(jax.tree_util.keystr(path))
    return paths


def sharded_init(
    model_factory: Callable[[], nnx.Module],
    mesh: Mesh,
    rules: Iterable[Sequence] = DEFAULT_RULES,
) -> tuple[nnx.GraphDef, nnx.State]:
    """``(graphdef, state)`` of ``model_factory()``, with every array created already sharded.

    ``model_factory`` builds the module (it owns its ``nnx.Rngs``); it is traced twice: once
    abstractly for the shapes, once under ``jax.jit`` with the shardings as ``out_shardings``.
    """
    graphdef, abstract_state = nnx.split(nnx.eval_shape(model_factory))
    shardings = state_shardings(abstract_state, mesh, rules)

    @functools.partial(jax.jit, out_shardings=shardings)
    def init() -> nnx.State:
        return nnx.state(model_factory())

    with use_rules(mesh, rules):
        state = init()
    return graphdef, state


def batch_sharding(mesh: Mesh, rules: Iterable[Sequence] = DEFAULT_RULES) -> NamedSharding:
    """Sharding of a batch whose leading dimension is ``"batch"`` (rest replicated)."""
    table = normalize_rules(rules)
    if "batch" not in table:
        raise KeyError("the sharding rules have no 'batch' entry; add one, e.g. ('batch', ('data', 'fsdp'))")
    return NamedSharding(mesh, PartitionSpec(table["batch"] or None))


def shard_batch(batch: Any, mesh: Mesh, rules: Iterable[Sequence] = DEFAULT_RULES) -> Any:
    """Host-local numpy arrays (this process's share) -> global ``jax.Array``s.

    Every leaf's leading dimension is the local batch; the global batch (local * processes)
    must divide over the ``"batch"`` mesh axes, otherwise ``ValueError``.
    """
    sharding = batch_sharding(mesh, rules)
    axes = sharding.spec[0]
    axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
    split = math.prod(mesh.shape[a] for a in axes)

    def to_global(path, local):
        local = np.asarray(local)
        global_batch = local.shape[0] * jax.process_count() if local.ndim else 0
        if local.ndim == 0 or global_batch % split:
            raise ValueError(
                f"shard_batch: leaf {jax.tree_util.keystr(path)} of local shape {local.shape}: "
                f"the global batch ({global_batch}) must be divisible by {split} "
                f"(mesh axes {axes}); change the batch size or the mesh"
            )
        return jax.make_array_from_process_local_data(sharding, local)

    return jax.tree_util.tree_map_with_path(to_global, batch)


@contextlib.contextmanager
def use_rules(mesh: Mesh | None, rules: Iterable[Sequence] = DEFAULT_RULES) -> Iterator:
    """Sets ``mesh`` (``jax.set_mesh``, skipped if ``None``) and the rules :func:`constrain` uses.

    Rules are read when a function is traced: jit caches do not see them, so trace (or
    AOT-compile) the step inside this context.
    """
    rules = tuple(rules)
    normalize_rules(rules)
    token = _ACTIVE_RULES.set(rules)
    try:
        if mesh is None:
            yield
        else:
            with jax.set_mesh(mesh):
                yield
    finally:
        _ACTIVE_RULES.reset(token)


def constrain(x: jax.Array, logical_names: Sequence[str | None]) -> jax.Array:
    """Sharding hint for an activation by logical names (``"batch"``, ``"length"`` ...).

    No-op when no mesh is set (``jax.set_mesh`` / :func:`use_rules`); otherwise
    ``with_sharding_constraint`` to the rules of :func:`use_rules` (``DEFAULT_RULES`` if none
    were set). Mesh axes that do not divide a dimension are dropped (see ``rules.py``).
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    rules = _ACTIVE_RULES.get()
    spec = logical_to_mesh(
        logical_names, x.shape, dict(mesh.shape), DEFAULT_RULES if rules is None else rules
    )
    return jax.lax.with_sharding_constraint(x, spec)
