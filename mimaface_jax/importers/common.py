"""Shared machinery of the checkpoint importers (no torch needed: ``safetensors.numpy``).

An importer builds an *import plan*: for every parameter leaf of the target NNX state, the
source key it comes from and the transform that turns the source tensor into the leaf's
layout. :func:`apply_plan` then checks the whole plan against the loaded tensors at once
(missing keys, unexpected keys, mis-shaped tensors, leaves without a source) and either
raises one :class:`WeightImportError` naming every problem, or returns a complete new state.
Nothing partial is ever returned.

torch -> flax layouts: Linear ``(out, in)`` -> ``(in, out)``; Conv2d ``(O, I, kh, kw)`` ->
``(kh, kw, I, O)``; norm ``weight`` -> ``scale``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Iterable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

Transform = Callable[[np.ndarray], np.ndarray]


class WeightImportError(ImportError):
    """A checkpoint does not match the model. Lists every problem by key, all at once."""

    def __init__(
        self,
        source: str,
        *,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        mismatched: Sequence[tuple[str, tuple, tuple]] = (),
        other: Sequence[str] = (),
        hint: str = "",
    ):
        self.source = source
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)
        self.other = list(other)
        lines = [f"cannot import weights from {source}:"]
        if self.missing:
            lines.append(f"  {len(self.missing)} missing key(s) (the model needs them, the file lacks them):")
            lines += [f"    {k}" for k in self.missing]
        if self.unexpected:
            lines.append(f"  {len(self.unexpected)} unexpected key(s) (in the file, not used by the model):")
            lines += [f"    {k}" for k in self.unexpected]
        if self.mismatched:
            lines.append(f"  {len(self.mismatched)} mis-shaped tensor(s) (key: file shape -> model expects):")
            lines += [f"    {k}: {tuple(got)} -> {tuple(want)}" for k, got, want in self.mismatched]
        if self.other:
            lines.append("  other problems:")
            lines += [f"    {m}" for m in self.other]
        if hint:
            lines.append(f"  hint: {hint}")
        super().__init__("\n".join(lines))


class CheckpointFileError(FileNotFoundError):
    """A checkpoint file / folder is missing, or a folder lacks the weights file. One line."""


class CheckpointConfigError(ValueError):
    """A checkpoint's config.json is unreadable or describes a model the importers do not
    support. One line, naming the file and the setting."""


# ---------------------------------------------------------------------------------------------
# loading


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads one ``.safetensors`` file into numpy arrays."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointFileError(f"no safetensors file at {path}")
    try:
        return load_file(path)
    except SafetensorError as e:
        raise WeightImportError(path, other=[f"not a readable safetensors file: {e}"]) from e


def load_safetensors_folder(
    folder: str | os.PathLike, base_names: Sequence[str] = ("diffusion_pytorch_model", "model")
) -> tuple[dict[str, np.ndarray], str]:
    """Loads the weights of a diffusers / HF model folder.

    Looks for ``<base>.safetensors`` or a sharded ``<base>.safetensors.index.json`` for each
    base name in order. Returns ``(tensors, description of what was read)``.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise CheckpointFileError(f"no model folder at {folder}")
    for base in base_names:
        single = os.path.join(folder, f"{base}.safetensors")
        if os.path.isfile(single):
            return load_safetensors(single), single
        index = os.path.join(folder, f"{base}.safetensors.index.json")
        if os.path.isfile(index):
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
            tensors: dict[str, np.ndarray] = {}
            for shard in sorted(set(weight_map.values())):
                tensors.update(load_safetensors(os.path.join(folder, shard)))
            return tensors, index
    present = sorted(os.listdir(folder))
    raise CheckpointFileError(
        f"{folder} has no {' or '.join(b + '.safetensors' for b in base_names)} (nor a sharded index); "
        f"it contains {present}. Save the model with save_pretrained(..., safe_serialization=True)."
    )


def load_json(path: str | os.PathLike) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointFileError(f"no config file at {path}")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise CheckpointConfigError(f"{path}: not valid JSON ({e})") from None


# ---------------------------------------------------------------------------------------------
# layouts


def identity(x: np.ndarray) -> np.ndarray:
    return x


def torch_linear_to_flax(w: np.ndarray) -> np.ndarray:
    """Linear weight (out, in) -> kernel (in, out)."""
    return np.ascontiguousarray(w.T)


def torch_conv_to_flax(w: np.ndarray) -> np.ndarray:
    """Conv2d weight (O, I, kh, kw) -> kernel (kh, kw, I, O)."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def default_transform(leaf_name: str, ndim: int) -> Transform:
    """The layout transform of a torch tensor feeding an NNX leaf named ``leaf_name``."""
    if leaf_name == "kernel" and ndim == 2:
        return torch_linear_to_flax
    if leaf_name == "kernel" and ndim == 4:
        return torch_conv_to_flax
    return identity


_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "embedding": "weight"}


def default_torch_key(path: Sequence) -> str:
    """NNX state path -> torch state-dict key: ``('a', 0, 'kernel')`` -> ``'a.0.weight'``."""
    *parents, leaf = (str(p) for p in path)
    return ".".join([*parents, _LEAF_TO_TORCH.get(leaf, leaf)])


# ---------------------------------------------------------------------------------------------
# plans


@dataclasses.dataclass(frozen=True)
class PlanEntry:
    """Where one NNX leaf comes from."""

    source_key: str
    transform: Transform = identity


def flat_params(state: nnx.State) -> dict[tuple, object]:
    """``{path: leaf}`` of an NNX state (abstract or concrete); leaves are Variables."""
    return {tuple(path): leaf for path, leaf in state.flat_state()}


def build_default_plan(
    abstract_state: nnx.State,
    rename: Callable[[str], str] = lambda k: k,
) -> dict[tuple, PlanEntry]:
    """A plan mapping every leaf to ``rename(default_torch_key(path))`` with the default layout."""
    plan = {}
    for path, leaf in flat_params(abstract_state).items():
        plan[path] = PlanEntry(rename(default_torch_key(path)), default_transform(str(path[-1]), len(leaf.shape)))
    return plan


def apply_plan(
    abstract_state: nnx.State,
    plan: Mapping[tuple, PlanEntry],
    tensors: Mapping[str, np.ndarray],
    *,
    source: str,
    ignored_keys: Iterable[str] = (),
    extra_problems: Sequence[str] = (),
    hint: str = "",
) -> nnx.State:
    """Fills ``abstract_state`` from ``tensors`` following ``plan``; all-or-nothing.

    Checks, all at once: every leaf has a plan entry (and nothing else does), every source key
    is used by exactly one leaf, every source key exists in ``tensors``, every transformed
    tensor has the leaf's shape, and every tensor in ``tensors`` is used or listed in
    ``ignored_keys``. Any problem raises :class:`WeightImportError`; else returns a new
    state whose leaves hold the tensors cast to each leaf's dtype.
    """
    leaves = flat_params(abstract_state)
    other = list(extra_problems)
    no_plan = [p for p in leaves if p not in plan]
    other += [f"model parameter {'.'.join(map(str, p))} has no source key (importer bug)" for p in no_plan]
    stray = [p for p in plan if p not in leaves]
    other += [f"import plan names {'.'.join(map(str, p))}, which the model lacks (importer bug)" for p in stray]
    used: dict[str, tuple] = {}
    for path, entry in plan.items():
        if entry.source_key in used:
            other.append(
                f"source key {entry.source_key} would feed both {'.'.join(map(str, used[entry.source_key]))} "
                f"and {'.'.join(map(str, path))} (importer bug)"
            )
        used[entry.source_key] = path

    missing, mismatched = [], []
    values = {}
    for path, leaf in leaves.items():
        entry = plan.get(path)
        if entry is None:
            continue
        if entry.source_key not in tensors:
            missing.append(entry.source_key)
            continue
        raw = np.asarray(tensors[entry.source_key])
        try:
            value = entry.transform(raw)
        except ValueError as e:
            mismatched.append((entry.source_key, raw.shape, leaf.shape))
            other.append(f"{entry.source_key}: {e}")
            continue
        if tuple(value.shape) != tuple(leaf.shape):
            mismatched.append((entry.source_key, raw.shape, leaf.shape))
            continue
        values[path] = value
    ignored = set(ignored_keys)
    unexpected = [k for k in tensors if k not in used and k not in ignored]
    if missing or unexpected or mismatched or other:
        raise WeightImportError(
            source, missing=missing, unexpected=unexpected, mismatched=mismatched, other=other, hint=hint
        )

    filled = {
        path: leaf.replace(jnp.asarray(values[path], dtype=leaf.dtype)) for path, leaf in leaves.items()
    }
    return nnx.State.from_flat_path(filled)
