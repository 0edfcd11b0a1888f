"""``init.pretrained``: parameters from a ``python -m mimaface_jax.convert all`` checkpoint.

The pretrained checkpoint (``importers/pretrained_store.py``) holds one Orbax item per
component: ``unet`` (SD-1.5 U-Net with conv_in already extended to 3C+1 input channels, plus
AnimateDiff motion modules), ``vae`` and ``clip``. Each component is restored straight into
the shardings of the trainer's abstract parameters (``partial_restore``: only the arrays this
model has are read, e.g. no motion modules in the image stage), so no process ever holds a
full unsharded copy. Model parameters the checkpoint lacks (MIA, new layers) keep their fresh
init and are listed in the log; a parameter whose shape differs is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from mimaface_jax.importers.pretrained_store import PretrainedStoreError, read_meta
from mimaface_jax.training.mesh_and_model import Model, _name

# component -> prefix of its parameters in the trainer's flat names ("" = the autoencoder)
MODEL_COMPONENTS = {"unet": "unet.", "clip": "clip."}


def _stored_tree(path: Path, component: str) -> dict:
    with ocp.StandardCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(path / "0" / component)
    return {_name(p): (tuple(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(metadata.item_metadata.tree)[0]}


def restore_component(path: Path, component: str, wanted: dict[str, jax.ShapeDtypeStruct]) -> dict:
    """``{name: sharded array}`` for the ``wanted`` names (component-relative) found in the
    checkpoint. Raises ``PretrainedStoreError`` for shape / dtype-size mismatches."""
    stored = _stored_tree(path, component)
    target: dict = {}
    problems = []
    for name, abstract in wanted.items():
        if name not in stored:
            continue
        keys, meta = stored[name]
        if tuple(meta.shape) != tuple(abstract.shape):
            problems.append(f"{component}.{name}: {tuple(meta.shape)} in the checkpoint, {tuple(abstract.shape)} "
                            "in the model")
            continue
        node = target
        for key in keys[:-1]:
            node = node.setdefault(getattr(key, "key", getattr(key, "idx", key)), {})
        last = keys[-1]
        node[getattr(last, "key", getattr(last, "idx", last))] = abstract
    if problems:
        raise PretrainedStoreError(f"init.pretrained={path}: {len(problems)} parameter(s) do not fit this "
                                   "model (is the model config the one the checkpoint was converted for?):\n  "
                                   + "\n  ".join(problems[:20]))
    if not target:
        return {}
    with ocp.PyTreeCheckpointer() as checkpointer:
        restored = checkpointer.restore(path / "0" / component, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
    out = {_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]}
    return {n: v.astype(wanted[n].dtype) if v.dtype != wanted[n].dtype else v for n, v in out.items()}


def load_autoencoder(config, model: Model, ae_params: dict, log=print) -> dict:
    """``ae_params`` with every array of the store's ``vae`` component (all must be there)."""
    path = Path(config.init.pretrained).expanduser().absolute()
    components = read_meta(path)["components"]
    if "vae" not in components:
        raise PretrainedStoreError(f"init.pretrained={path} has no 'vae' component (it has {components})")
    got = restore_component(path, "vae", dict(model.ae_abstract))
    missing = sorted(set(model.ae_abstract) - set(got))
    if missing:
        raise PretrainedStoreError(f"init.pretrained={path}: the vae lacks {len(missing)} arrays of the "
                                   f"model's autoencoder, e.g. {missing[:3]}")
    log(f"init: vae ({len(got)} arrays) from {path}")
    return {**ae_params, **got}


def load_pretrained(config, model: Model, params: dict, ae_params: dict, log=print) -> tuple[dict, dict]:
    """``params`` / ``ae_params`` with every array the checkpoint has replaced (see module doc)."""
    path = Path(config.init.pretrained).expanduser().absolute()
    components = read_meta(path)["components"]
    params, ae_params = dict(params), dict(ae_params)
    loaded = 0
    for component, prefix in MODEL_COMPONENTS.items():
        wanted = {n[len(prefix):]: a for n, a in model.abstract_params.items() if n.startswith(prefix)}
        if not wanted:
            continue
        if component not in components:
            raise PretrainedStoreError(f"init.pretrained={path} has no {component!r} component "
                                       f"(it has {components}); convert it with `python -m mimaface_jax.convert all`")
        got = restore_component(path, component, wanted)
        params.update({prefix + n: v for n, v in got.items()})
        loaded += len(got)
        missing = sorted(set(wanted) - set(got))
        log(f"init: {len(got)} {component} arrays from {path}"
            + (f"; {len(missing)} not in it keep their init (e.g. {missing[:2]})" if missing else ""))
    if config.autoencoder.kind == "vae":
        ae_params = load_autoencoder(config, model, ae_params, log)
    if not loaded:
        raise PretrainedStoreError(f"init.pretrained={path}: no parameter of this model was found in it")
    return params, ae_params
