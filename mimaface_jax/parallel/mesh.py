"""The device mesh: axes ``("data", "fsdp", "tensor")`` with sizes from the config.

``data`` replicates parameters and splits the batch, ``fsdp`` splits both the batch and the
parameters (ZeRO-3 style), ``tensor`` splits the inner widths of matmuls / convs. One size may
be ``-1``: it takes all the devices the other two leave.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import jax
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "fsdp", "tensor")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes; exactly zero or one of them may be ``-1`` (= the remaining devices)."""

    data: int = 1
    fsdp: int = -1
    tensor: int = 1

    @classmethod
    def from_mapping(cls, values: Mapping[str, int]) -> "MeshConfig":
        unknown = sorted(set(values) - set(MESH_AXES))
        if unknown:
            raise ValueError(f"mesh config: unknown keys {unknown}; known: {list(MESH_AXES)}")
        return cls(**{k: int(v) for k, v in values.items()})

    def sizes(self) -> tuple[int, int, int]:
        return (self.data, self.fsdp, self.tensor)

    def resolve(self, num_devices: int) -> tuple[int, int, int]:
        """Concrete axis sizes for ``num_devices`` devices; raises ``ValueError`` if impossible."""
        sizes = self.sizes()
        for name, size in zip(MESH_AXES, sizes):
            if not isinstance(size, int) or (size < 1 and size != -1):
                raise ValueError(
                    f"mesh config: {name}={size!r} is not valid; use a positive integer or -1 "
                    "(= the remaining devices)"
                )
        free = [name for name, size in zip(MESH_AXES, sizes) if size == -1]
        if len(free) > 1:
            raise ValueError(
                f"mesh config: only one axis may be -1, got {free} = -1; fix all but one size"
            )
        fixed = math.prod(size for size in sizes if size != -1)
        if free:
            if num_devices % fixed:
                raise ValueError(
                    f"mesh config {self}: the fixed sizes multiply to {fixed}, which does not "
                    f"divide the {num_devices} devices, so {free[0]}=-1 has no integer size"
                )
            sizes = tuple(num_devices // fixed if s == -1 else s for s in sizes)
        elif fixed != num_devices:
            raise ValueError(
                f"mesh config {self}: data*fsdp*tensor = {fixed} but there are {num_devices} "
                "devices; make the product equal the device count or set one axis to -1"
            )
        return sizes  # type: ignore[return-value]


def make_mesh(cfg: MeshConfig | Mapping[str, int], devices: Sequence | None = None) -> Mesh:
    """A ``Mesh`` with axes ``("data", "fsdp", "tensor")`` over ``devices`` (default: all).

    Axes are ``AxisType.Auto``: XLA propagates shardings from the parameter / batch placements
    and the ``constrain`` hints (jax's default for ``make_mesh`` is ``Explicit``, which would
    require every op to agree on shardings in its types).
    """
    if not isinstance(cfg, MeshConfig):
        cfg = MeshConfig.from_mapping(cfg)
    devices = list(jax.devices() if devices is None else devices)
    shape = cfg.resolve(len(devices))
    # jax.make_mesh orders devices so that the last axes get the fastest interconnect.
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)
