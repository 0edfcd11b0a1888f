"""Logical axis names -> mesh axes.

Rules are a tuple of ``(logical_name, mesh_axes)`` pairs; ``mesh_axes`` is ``None``
(replicated), one mesh axis name, or a tuple of them (the dimension is split over their
product). Configs hold such a tuple and may override entries with :func:`merge_rules`.

Resolution of one array (:func:`logical_to_mesh`) is deterministic: for each dimension, in
order, the rule's mesh axes are taken left to right and an axis is *skipped* when

- it is already used by an earlier dimension of the same array (a mesh axis appears at most
  once in a ``PartitionSpec``), or
- the product of the axes kept so far for this dimension times its size does not divide the
  dimension (e.g. a conv kernel with 3 input channels is not split over ``fsdp=4``).

A skipped axis simply leaves that part of the dimension replicated. Unknown logical names and
rules naming axes that the mesh lacks are errors.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from jax.sharding import PartitionSpec

from mimaface_jax.models.partitioning import PARAM_AXES

MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]

# MaxText-like FSDP defaults. Parameters: the model-width side of every kernel is split over
# ``fsdp`` (gathered just before use), the inner side over ``tensor``.
PARAM_RULES: Rules = (
    ("embed", "fsdp"),
    ("conv_in", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("conv_out", "tensor"),
    ("norm", None),
    ("vocab", None),
)

# Activations: the batch (frames folded in) over data x fsdp; channels / widths over tensor.
ACTIVATION_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("frames", None),
    ("length", None),      # tokens of attention / spatial positions
    ("height", None),
    ("width", None),
    ("act_embed", "tensor"),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_channels", "tensor"),
)

DEFAULT_RULES: Rules = PARAM_RULES + ACTIVATION_RULES

_missing = sorted(set(PARAM_AXES) - {None} - {name for name, _ in PARAM_RULES})
assert not _missing, f"parallel/rules.py: PARAM_AXES without a rule: {_missing}"


def _as_axes(value: MeshAxes | Sequence[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def normalize_rules(rules: Iterable[Sequence]) -> dict[str, tuple[str, ...]]:
    """Rules as ``{logical: (mesh axes...)}``; accepts lists (as configs give them)."""
    table: dict[str, tuple[str, ...]] = {}
    for entry in rules:
        if len(entry) != 2 or not isinstance(entry[0], str):
            raise ValueError(f"sharding rule {entry!r} is not a (logical_name, mesh_axes) pair")
        name, axes = entry
        if name in table:
            raise ValueError(f"sharding rules name {name!r} twice; use merge_rules to override")
        table[name] = _as_axes(axes)
    return table


def merge_rules(base: Iterable[Sequence], overrides: Iterable[Sequence]) -> Rules:
    """``base`` with the entries of ``overrides`` replacing same-named ones (new names added)."""
    table = normalize_rules(base)
    table.update(normalize_rules(overrides))
    return tuple((name, axes if axes else None) for name, axes in table.items())


def logical_to_mesh(
    logical: Sequence[str | None],
    shape: Sequence[int],
    mesh_shape: Mapping[str, int],
    rules: Iterable[Sequence] = DEFAULT_RULES,
) -> PartitionSpec:
    """Mesh ``PartitionSpec`` of an array of ``shape`` with logical dimension names ``logical``.

    ``mesh_shape`` is ``{axis name: size}`` (``mesh.shape``). See the module docstring for how
    mesh axes that do not divide a dimension or are already used are dropped.
    """
    if len(logical) != len(shape):
        raise ValueError(
            f"logical axes {tuple(logical)} name {len(logical)} dimensions but the array has "
            f"shape {tuple(shape)}"
        )
    table = normalize_rules(rules)
    used: set[str] = set()
    spec: list[str | tuple[str, ...] | None] = []
    for name, dim in zip(logical, shape):
        if name is None:
            spec.append(None)
            continue
        if name not in table:
            raise KeyError(
                f"logical axis {name!r} has no sharding rule; known: {sorted(table)}. "
                "Add it to the rules in the config (parallel/rules.py has the defaults)."
            )
        kept: list[str] = []
        split = 1
        for axis in table[name]:
            if axis not in mesh_shape:
                raise ValueError(
                    f"sharding rule {name!r} -> {axis!r}: the mesh has no axis {axis!r} "
                    f"(axes: {tuple(mesh_shape)})"
                )
            size = mesh_shape[axis]
            if axis in used or dim % (split * size):
                continue
            kept.append(axis)
            split *= size
        used.update(kept)
        spec.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*spec)
