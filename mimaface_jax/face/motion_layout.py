"""Named, versioned layout of a motion vector.

A motion vector is one flat float32 array per frame; a ``MotionLayout`` names its parts, their
group (``pose`` / ``expression`` / ``gaze``, consumed by MIA's motion tokens) and how each part
changes under a horizontal flip of the image. The layout travels with the data (JSON in the
dataset's metadata) so that models read sizes from it instead of hard-coding them.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Mapping

import numpy as np

GROUPS = ("pose", "expression", "gaze")


@dataclasses.dataclass(frozen=True)
class MotionField:
    """One named part of the motion vector.

    ``flip_sign`` / ``flip_perm`` describe a horizontal image flip: the flipped part is
    ``part[flip_perm] * flip_sign`` (either may be None = identity). ``flippable=False`` marks a
    part that has no closed-form mirror (e.g. PCA coefficients) and must be re-measured.
    """

    name: str
    size: int
    group: str
    flip_sign: tuple[float, ...] | None = None
    flip_perm: tuple[int, ...] | None = None
    flippable: bool = True

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"field {self.name!r}: group {self.group!r} not in {GROUPS}")
        if self.size <= 0:
            raise ValueError(f"field {self.name!r}: size must be positive, got {self.size}")
        for attr in ("flip_sign", "flip_perm"):
            value = getattr(self, attr)
            if value is not None and len(value) != self.size:
                raise ValueError(f"field {self.name!r}: {attr} has {len(value)} entries, "
                                 f"size is {self.size}")


@dataclasses.dataclass(frozen=True)
class MotionLayout:
    """An ordered set of ``MotionField`` s with a version string."""

    version: str
    fields: tuple[MotionField, ...]

    def __post_init__(self):
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"layout {self.version!r}: duplicate field names in {names}")

    @property
    def size(self) -> int:
        return sum(f.size for f in self.fields)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> MotionField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"layout {self.version!r} has no field {name!r}; fields: {self.names}")

    def slice(self, name: str) -> slice:
        start = 0
        for f in self.fields:
            if f.name == name:
                return slice(start, start + f.size)
            start += f.size
        raise KeyError(f"layout {self.version!r} has no field {name!r}; fields: {self.names}")

    def group_indices(self, group: str) -> np.ndarray:
        """Indices into the vector of every field of ``group`` (empty if none)."""
        if group not in GROUPS:
            raise ValueError(f"group {group!r} not in {GROUPS}")
        idx = [np.arange(self.slice(f.name).start, self.slice(f.name).stop)
               for f in self.fields if f.group == group]
        return np.concatenate(idx) if idx else np.zeros((0,), np.int64)

    def group_sizes(self) -> dict[str, int]:
        return {g: int(self.group_indices(g).size) for g in GROUPS}

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """(..., size) -> {name: (..., field.size)}."""
        self._check(vector)
        return {f.name: vector[..., self.slice(f.name)] for f in self.fields}

    def join(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """{name: (..., field.size)} -> (..., size); every field must be given."""
        missing = [n for n in self.names if n not in parts]
        extra = [n for n in parts if n not in self.names]
        if missing or extra:
            raise ValueError(f"layout {self.version!r}: missing fields {missing}, "
                             f"unknown fields {extra}")
        arrays = [np.asarray(parts[f.name], np.float32) for f in self.fields]
        for f, a in zip(self.fields, arrays):
            if a.shape[-1] != f.size:
                raise ValueError(f"field {f.name!r}: last dim {a.shape[-1]} != size {f.size}")
        return np.concatenate(arrays, axis=-1)

    def flip(self, vector: np.ndarray) -> np.ndarray:
        """The motion vector of the horizontally flipped image (closed-form fields only)."""
        self._check(vector)
        blocked = [f.name for f in self.fields if not f.flippable]
        if blocked:
            raise ValueError(f"layout {self.version!r}: fields {blocked} have no closed-form "
                             "mirror; re-measure them from flipped landmarks")
        out = np.array(vector, dtype=np.float32, copy=True)
        for f in self.fields:
            s = self.slice(f.name)
            part = out[..., s]
            if f.flip_perm is not None:
                part = part[..., list(f.flip_perm)]
            if f.flip_sign is not None:
                part = part * np.asarray(f.flip_sign, np.float32)
            out[..., s] = part
        return out

    def _check(self, vector: np.ndarray) -> None:
        if vector.shape[-1] != self.size:
            raise ValueError(f"layout {self.version!r} expects vectors of size {self.size}, "
                             f"got shape {vector.shape}")

    def to_json(self) -> str:
        return json.dumps({"version": self.version,
                           "fields": [dataclasses.asdict(f) for f in self.fields]})

    @classmethod
    def from_json(cls, text: str) -> "MotionLayout":
        data = json.loads(text)
        fields = []
        for f in data["fields"]:
            for key in ("flip_sign", "flip_perm"):
                if f.get(key) is not None:
                    f[key] = tuple(f[key])
            fields.append(MotionField(**f))
        return cls(version=data["version"], fields=tuple(fields))


def facemesh_layout(num_expression: int = 64) -> MotionLayout:
    """The layout of motion measured from MediaPipe FaceMesh landmarks (real data).

    pose: yaw, pitch, roll in degrees; translation (x, y) of the face centre in units of the
    image width/height relative to the image centre; log of the face scale. gaze: (x, y) of the
    left and right iris centres relative to their eye corners, normalised by eye width.
    A horizontal flip negates yaw, roll and x-translation, swaps the eyes and negates gaze x.
    """
    return MotionLayout(
        version=f"facemesh-v1-e{num_expression}",
        fields=(
            MotionField("yaw", 1, "pose", flip_sign=(-1.0,)),
            MotionField("pitch", 1, "pose"),
            MotionField("roll", 1, "pose", flip_sign=(-1.0,)),
            MotionField("translation", 2, "pose", flip_sign=(-1.0, 1.0)),
            MotionField("log_scale", 1, "pose"),
            MotionField("expression", num_expression, "expression", flippable=False),
            MotionField("gaze", 4, "gaze", flip_sign=(-1.0, 1.0, -1.0, 1.0),
                        flip_perm=(2, 3, 0, 1)),
        ),
    )

