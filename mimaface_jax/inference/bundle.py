"""Inference bundles: everything generation needs from a training run, and nothing else.

A bundle is a folder::

    bundle.json          format name + version, the resolved training config, the motion
                         layout, which weights (ema / raw) of which step, what it holds
    params/              Orbax (StandardCheckpointer): the model's flat parameter dict
                         (U-Net, MIA, CLIP tower), fp32
    autoencoder/         Orbax: the frozen autoencoder's flat parameters (absent for the
                         parameter-free space-to-depth transform)
    expression_basis.npz the FaceMesh expression PCA of the training data (FaceMesh layouts)

No optimizer state, no data-iterator state: a bundle does not need the training data or the
pretrained store afterwards. ``load_model`` reads a bundle or a training workdir (its latest
checkpoint, or ``step``) the same way, checks the config against this code's config keys
(model and autoencoder keys must match exactly: an unknown or missing key is an error naming
it) and every parameter's name and shape against the model the code builds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import ml_collections
import numpy as np

import mimaface_jax
from mimaface_jax.face.motion_layout import MotionLayout

FORMAT = "mimaface-inference-bundle"
FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
PARAMS, AUTOENCODER, BASIS = "params", "autoencoder", "expression_basis.npz"
STRICT_SECTIONS = ("model", "autoencoder")


class BundleError(ValueError):
    """A model bundle / workdir that cannot be used; the message names the file and the problem."""


# ------------------------------------------------------------------------------------- config


def code_config() -> ml_collections.ConfigDict:
    """This code's config with every key (``configs/base.py``), unlocked."""
    from mimaface_jax.config_files import load_module

    config = load_module(Path(mimaface_jax.__file__).resolve().parents[1] / "configs" / "base.py").get_config()
    config.unlock()
    return config


def config_from_json(data: dict, where: str, log=print) -> ml_collections.ConfigDict:
    """A training config JSON (``config_validation.to_json_dict``) -> ConfigDict over this code's
    keys. Sections ``model`` and ``autoencoder`` must have exactly the code's keys; elsewhere a
    key the code lacks is an error and a key the JSON lacks keeps the code's default (logged)."""
    config = code_config()

    def merge(node: ml_collections.ConfigDict, values: dict, prefix: str):
        for key, value in values.items():
            name = f"{prefix}{key}"
            if key not in node:
                raise BundleError(f"{where}: config key {name!r} is not a key of this code's config "
                                  "(made by another version of mimaface_jax?)")
            current = node[key]
            if isinstance(current, ml_collections.ConfigDict):
                if not isinstance(value, dict):
                    raise BundleError(f"{where}: config key {name!r} must be a section, got {value!r}")
                merge(current, value, name + ".")
            else:
                if isinstance(current, tuple) and isinstance(value, list):
                    value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
                if isinstance(current, float) and isinstance(value, int):
                    value = float(value)
                node[key] = value
        for key in node.keys():
            if key not in values:
                name = f"{prefix}{key}"
                if name.split(".")[0] in STRICT_SECTIONS:
                    raise BundleError(f"{where}: config key {name!r} of this code's model config is missing "
                                      "(made by another version of mimaface_jax?)")
                log(f"note: {where} has no config key {name!r}; using this code's default {node[key]!r}")

    if not isinstance(data, dict):
        raise BundleError(f"{where}: the config is not a JSON object")
    merge(config, data, "")
    return config


# ----------------------------------------------------------------------------------- weights


def _restore_tree(path: Path) -> dict:
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(path.absolute())
    return {k: np.asarray(v) for k, v in restored.items()}


def latest_step(workdir: Path) -> int | None:
    d = workdir / "checkpoints"
    steps = [int(p.name) for p in d.iterdir() if p.name.isdigit() and (p / "state").is_dir()] if d.is_dir() else []
    return max(steps) if steps else None


def workdir_params(workdir: Path, weights: str = "ema", step: int | None = None) -> tuple[int, dict]:
    """(step, flat params) of a training workdir: frozen + EMA (or raw trainable) parameters."""
    if weights not in ("ema", "raw"):
        raise BundleError(f"--weights must be 'ema' or 'raw', got {weights!r}")
    if step is None:
        step = latest_step(workdir)
        if step is None:
            raise BundleError(f"{workdir}: holds no finished checkpoint (checkpoints/<step>/state)")
    path = workdir / "checkpoints" / str(step) / "state"
    if not path.is_dir():
        raise BundleError(f"{path}: no checkpoint of step {step} (have {latest_step(workdir)} as the latest)")
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(path)
    if weights == "ema" and not state.get("ema"):
        raise BundleError(f"{path}: the run kept no EMA parameters (ema.enabled=False); use --weights raw")
    chosen = state["ema"] if weights == "ema" else state["trainable"]
    return int(step), {k: np.asarray(v) for k, v in {**state["frozen"], **chosen}.items()}


def autoencoder_params(config, model, mesh, rules, log=print) -> dict:
    """The frozen autoencoder exactly as the run used it (``mesh_and_model.load_autoencoder``)."""
    from mimaface_jax.training import mesh_and_model

    return mesh_and_model.load_autoencoder(config, model, mesh, rules, log=log)


def expression_basis_path(config) -> Path | None:
    """The FaceMesh expression basis of the run's data (the first dataset of ``data.mixture``);
    None for the SynthFaces layout."""
    if config.model.mia.motion_layout != "facemesh":
        return None
    from mimaface_jax.config_validation import parse_mixture
    from mimaface_jax.data import records
    from mimaface_jax.training.data_source import resolve_dataset_dir

    first = next(iter(parse_mixture(config.data.mixture)))
    path = Path(resolve_dataset_dir(config.data.tfds_data_dir, first))
    metadata = json.loads((path / "metadata.json").read_text())
    if records.META_EXPRESSION_BASIS not in metadata:
        raise BundleError(f"{path}/metadata.json: the training data has no expression basis")
    return path / metadata[records.META_EXPRESSION_BASIS]


# ------------------------------------------------------------------------------------ export


def export(workdir: str | os.PathLike, out: str | os.PathLike, weights: str = "ema", step: int | None = None,
           log=print) -> dict:
    """Writes the bundle of a training run to ``out`` (atomically: a temporary folder renamed at
    the end). Returns the bundle.json document."""
    from mimaface_jax.training import mesh_and_model
    from mimaface_jax.training.model_config import motion_layout

    workdir, out = Path(workdir).absolute(), Path(out).absolute()
    if (out / BUNDLE_JSON).exists() or (out.exists() and any(out.iterdir())):
        raise BundleError(f"{out}: exists and is not empty; choose another --out")
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise BundleError(f"{config_path}: not found (is {workdir} a training workdir?)")
    config_json = json.loads(config_path.read_text())
    config = config_from_json(config_json, str(config_path), log)
    step, params = workdir_params(workdir, weights, step)
    mesh, rules = mesh_and_model.build_mesh(config)
    model = mesh_and_model.abstract_model(config, mesh, rules)
    check_params(params, model.abstract_params, str(workdir))
    ae = {k: np.asarray(v) for k, v in autoencoder_params(config, model, mesh, rules, log).items()}
    basis = expression_basis_path(config)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, "weights": weights,
           "from_workdir": str(workdir), "config": config_json,
           "motion_layout": json.loads(motion_layout(config).to_json()),
           "has_autoencoder": bool(ae), "has_expression_basis": basis is not None}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(tmp / PARAMS, params)
            if ae:
                checkpointer.save(tmp / AUTOENCODER, ae)
        if basis is not None:
            shutil.copyfile(basis, tmp / BASIS)
        (tmp / BUNDLE_JSON).write_text(json.dumps(doc, indent=1))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"export: {out} (step {step}, {weights} weights, {len(params)} arrays"
        f"{', autoencoder' if ae else ''}{', expression basis' if basis else ''})")
    return doc


def check_params(params: dict, abstract: dict, where: str) -> None:
    missing = sorted(set(abstract) - set(params))
    extra = sorted(set(params) - set(abstract))
    if missing or extra:
        raise BundleError(f"{where}: parameters do not match this code's model: missing {missing[:3]}"
                          f"{'...' if len(missing) > 3 else ''}, unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
    for name, a in abstract.items():
        if tuple(params[name].shape) != tuple(a.shape):
            raise BundleError(f"{where}: parameter {name!r} has shape {tuple(params[name].shape)}, "
                              f"this code's model wants {tuple(a.shape)}")


# -------------------------------------------------------------------------------------- load


@dataclasses.dataclass
class LoadedModel:
    """A model ready to generate: config, ``mesh_and_model.Model``, placed params, the motion
    layout and (FaceMesh layouts) the expression basis."""

    config: ml_collections.ConfigDict
    model: object
    params: dict
    ae_params: dict
    mesh: object
    rules: tuple
    layout: MotionLayout
    basis: object | None
    description: dict


def _read_bundle_doc(path: Path) -> dict:
    where = path / BUNDLE_JSON
    try:
        doc = json.loads(where.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BundleError(f"{where}: not a readable bundle description ({err.__class__.__name__})") from None
    if doc.get("format") != FORMAT:
        raise BundleError(f"{where}: not a mimaface inference bundle (format {doc.get('format')!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format version {doc.get('format_version')!r}; this code reads "
                          f"version {FORMAT_VERSION} (export it again with this version)")
    return doc


def load_model(path: str | os.PathLike, *, compute_dtype: str | None = None, attention: str | None = None,
               weights: str = "ema", step: int | None = None, log=print) -> LoadedModel:
    """A bundle folder or a training workdir -> ``LoadedModel`` (see the module docstring).

    ``compute_dtype`` ("float32" / "bfloat16") and ``attention`` ("xla" / "cudnn") override
    the config's ``precision.compute_dtype`` / ``model.unet.attention_implementation``."""
    from mimaface_jax.training import mesh_and_model
    from mimaface_jax.training.model_config import motion_layout

    path = Path(path).absolute()
    if (path / BUNDLE_JSON).is_file():
        doc = _read_bundle_doc(path)
        config = config_from_json(doc["config"], str(path / BUNDLE_JSON), log)
        params = _restore_tree(path / PARAMS)
        description = {"kind": "bundle", "path": str(path), "step": doc["step"], "weights": doc["weights"]}
    elif (path / "config.json").is_file() and (path / "checkpoints").is_dir():
        config = config_from_json(json.loads((path / "config.json").read_text()), str(path / "config.json"), log)
        step, params = workdir_params(path, weights, step)
        doc = None
        description = {"kind": "workdir", "path": str(path), "step": step, "weights": weights}
    elif not path.exists():
        raise BundleError(f"{path}: does not exist (--model takes a bundle from `export` or a training workdir)")
    else:
        raise BundleError(f"{path}: neither an inference bundle ({BUNDLE_JSON}) nor a training workdir "
                          "(config.json + checkpoints/)")
    if compute_dtype is not None:
        config.precision.compute_dtype = compute_dtype
    if attention is not None:
        config.model.unet.attention_implementation = attention
    layout = motion_layout(config)
    if doc is not None and MotionLayout.from_json(json.dumps(doc["motion_layout"])) != layout:
        raise BundleError(f"{path / BUNDLE_JSON}: its motion layout {doc['motion_layout']['version']!r} is not the "
                          f"one this code builds for its config ({layout.version!r})")
    mesh, rules = mesh_and_model.build_mesh(config)
    model = mesh_and_model.abstract_model(config, mesh, rules)
    check_params(params, model.abstract_params, str(path))
    placed = {n: jax.device_put(v.astype(model.abstract_params[n].dtype), model.shardings[n])
              for n, v in params.items()}
    if doc is not None:
        ae = _restore_tree(path / AUTOENCODER) if doc["has_autoencoder"] else {}
        check_params(ae, model.ae_abstract, str(path / AUTOENCODER))
        ae = {n: jax.device_put(v.astype(model.ae_abstract[n].dtype), model.ae_shardings[n]) for n, v in ae.items()}
    else:
        ae = autoencoder_params(config, model, mesh, rules, log)
    basis = None
    if config.model.mia.motion_layout == "facemesh":
        from mimaface_jax.face.expression import ExpressionPCA

        basis_path = path / BASIS if doc is not None else expression_basis_path(config)
        if not Path(basis_path).is_file():
            raise BundleError(f"{basis_path}: the FaceMesh model's expression basis is missing")
        basis = ExpressionPCA.load(str(basis_path))
    return LoadedModel(config, model, placed, ae, mesh, rules, layout, basis, description)
