"""The "pretrained" checkpoint: imported weights of several components in one Orbax folder.

Layout (an Orbax ``CheckpointManager`` directory with one step, 0): one ``StandardSave`` item
per component (``unet``, ``vae``, ``clip`` ...) holding its parameter tree as a pure dict, and a
``meta`` JSON item with each component's model config and the files it came from. The
training program restores components from it by name.

Writing is all-or-nothing: the checkpoint is written to a temporary sibling folder and renamed
into place only when complete; an existing ``out`` is never touched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import jax
import orbax.checkpoint as ocp
from flax import nnx

META_ITEM = "meta"


class PretrainedStoreError(RuntimeError):
    pass


def write_pretrained(out: str | os.PathLike, components: Mapping[str, nnx.State],
                     meta: Mapping[str, Any]) -> Path:
    """Writes ``components`` (name -> NNX param state) and ``meta`` (JSON-able) to ``out``."""
    out = Path(out).absolute()
    if out.exists():
        raise PretrainedStoreError(
            f"{out} already exists; refusing to overwrite it. Choose a new --out folder or "
            "delete the old one yourself.")
    if META_ITEM in components:
        raise PretrainedStoreError(f"component name {META_ITEM!r} is reserved")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    items = {name: ocp.args.StandardSave(nnx.to_pure_dict(state))
             for name, state in components.items()}
    items[META_ITEM] = ocp.args.JsonSave({"components": sorted(components), **meta})
    try:
        options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
        with ocp.CheckpointManager(tmp, options=options) as manager:
            manager.save(0, args=ocp.args.Composite(**items))
            manager.wait_until_finished()
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` JSON of a pretrained checkpoint (component list, configs, sources)."""
    path = Path(path)
    if not (path / "0" / META_ITEM).exists():
        raise PretrainedStoreError(
            f"{path} is not a pretrained checkpoint (no {path / '0' / META_ITEM}); write one "
            "with `python -m mimaface_jax.convert`.")
    with ocp.CheckpointManager(path.absolute()) as manager:
        return dict(manager.restore(0, args=ocp.args.Composite(
            **{META_ITEM: ocp.args.JsonRestore()}))[META_ITEM])


def restore_component(path: str | os.PathLike, name: str, abstract_state: nnx.State) -> nnx.State:
    """Restores component ``name`` into the structure (and shardings) of ``abstract_state``."""
    path = Path(path)
    components = read_meta(path)["components"]
    if name not in components:
        raise PretrainedStoreError(f"{path} has no component {name!r}; it has {components}")
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        nnx.to_pure_dict(abstract_state))
    with ocp.CheckpointManager(path.absolute()) as manager:
        restored = manager.restore(0, args=ocp.args.Composite(
            **{name: ocp.args.StandardRestore(target)}))[name]
    state = jax.tree.map(lambda x: x, abstract_state)
    nnx.replace_by_pure_dict(state, restored)
    return state
