"""Mesh, sharding rules and the model, created sharded from the start.

Parameters travel through the trainer as a FLAT dict ``{"unet.conv_in.kernel": array}``
(names joined with "."), which makes the per-stage trainable / frozen split, the optimizer
masks and the checkpoints plain dict operations. :class:`ModelSpec` converts between that
dict and the model (``merge``): it holds the NNX graphdef and the state's tree structure.

Creation never materialises a full copy of the weights on one device: the model is traced
abstractly (``nnx.eval_shape``), every parameter gets a ``NamedSharding`` from its logical
axis names and the config's rules, and a jitted init writes each shard where it lives.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from mimaface_jax.models.mimaface import MIMAFace, MIMAFaceConfig
from mimaface_jax.parallel import DEFAULT_RULES, make_mesh, merge_rules, state_shardings, use_rules
from mimaface_jax.parallel.mesh import MeshConfig
from mimaface_jax.training.model_config import dtype_of, make_autoencoder, mimaface_config


def build_mesh(config) -> tuple[Mesh, tuple]:
    """The ``("data", "fsdp", "tensor")`` mesh over all devices and the merged sharding rules."""
    mesh = make_mesh(MeshConfig.from_mapping(dict(config.mesh)))
    rules = merge_rules(DEFAULT_RULES, [tuple(r) for r in config.sharding_rules])
    return mesh, rules


def _name(path) -> str:
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):  # the Variable's ``value`` field
            continue
        parts.append(str(getattr(key, "key", getattr(key, "idx", key))))
    return ".".join(parts)


def flatten_state(state: Any) -> dict[str, Any]:
    """nnx.State (or a pytree like it) -> ``{name: leaf}``."""
    return {_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a module from a flat parameter dict."""

    graphdef: Any
    treedef: Any
    names: tuple[str, ...]

    @classmethod
    def of(cls, graphdef, abstract_state) -> "ModelSpec":
        flat = flatten_state(abstract_state)
        return cls(graphdef, jax.tree.structure(abstract_state), tuple(flat))

    def state(self, params: dict[str, Any]) -> nnx.State:
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"parameters missing: {missing[:5]}{'...' if len(missing) > 5 else ''}")
        return jax.tree.unflatten(self.treedef, [params[n] for n in self.names])

    def merge(self, params: dict[str, Any]):
        return nnx.merge(self.graphdef, self.state(params))


@dataclasses.dataclass(frozen=True)
class Model:
    """The model (``spec``, abstract flat params with shardings) and the frozen autoencoder."""

    config: MIMAFaceConfig
    spec: ModelSpec
    abstract_params: dict[str, jax.ShapeDtypeStruct]   # with .sharding
    shardings: dict[str, jax.sharding.NamedSharding]
    ae_spec: ModelSpec
    ae_abstract: dict[str, jax.ShapeDtypeStruct]
    ae_shardings: dict[str, jax.sharding.NamedSharding]


def _abstract(factory, mesh, rules):
    graphdef, abstract_state = nnx.split(nnx.eval_shape(factory))
    shardings = flatten_state(state_shardings(abstract_state, mesh, rules))
    flat = flatten_state(abstract_state)
    abstract = {n: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings[n]) for n, x in flat.items()}
    return ModelSpec.of(graphdef, abstract_state), abstract, shardings


class CountingRngs:
    """A stand-in for ``nnx.Rngs`` when creating the model under a trace (``eval_shape``, jit):
    every draw (any stream: ``rngs.params()``, ``rngs()``) is ``fold_in(key(seed), n)`` with a
    Python counter.

    Why: ``nnx.Rngs`` keeps its counter in a Variable; each draw under a trace writes a tracer
    into it, and that write reads ``.sharding`` of the tracer, whose AttributeError message
    scans the whole trace so far: quadratic in the number of parameters (SD-1.5 stage 2: 23 s
    vs 1.5 s for the abstract model). The modules only draw keys, so the graph is the same.
    """

    def __init__(self, seed: int):
        self._seed = int(seed)
        self._count = 0

    def __call__(self) -> jax.Array:
        self._count += 1
        return jax.random.fold_in(jax.random.key(self._seed), self._count)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self  # every stream draws from the same counter


def model_factories(config):
    mc = mimaface_config(config)
    dtype = dtype_of(config.precision.compute_dtype)

    def model():
        return MIMAFace(mc, dtype=dtype, param_dtype=dtype_of(config.precision.param_dtype),
                        rngs=CountingRngs(config.seed))

    def autoencoder():
        return make_autoencoder(config, CountingRngs(config.seed + 1))

    return mc, model, autoencoder


def abstract_model(config, mesh: Mesh, rules) -> Model:
    """Shapes, dtypes and shardings of every parameter; allocates nothing."""
    mc, model, autoencoder = model_factories(config)
    spec, abstract, shardings = _abstract(model, mesh, rules)
    ae_spec, ae_abstract, ae_shardings = _abstract(autoencoder, mesh, rules)
    return Model(mc, spec, abstract, shardings, ae_spec, ae_abstract, ae_shardings)


def init_params(config, model: Model, mesh: Mesh, rules) -> tuple[dict, dict]:
    """Freshly initialised (params, autoencoder params), each array born with its sharding."""
    _, factory, ae_factory = model_factories(config)

    def init(f):
        return flatten_state(nnx.state(f()))

    with use_rules(mesh, rules):
        params = jax.jit(functools.partial(init, factory), out_shardings=model.shardings)()
    return params, init_autoencoder(config, model, mesh, rules)


def init_autoencoder(config, model: Model, mesh: Mesh, rules) -> dict:
    """The frozen autoencoder's params (none for space-to-depth).

    The KL-VAE comes from ``init.pretrained`` in real runs; without it, a seeded random init.
    """
    _, _, ae_factory = model_factories(config)
    with use_rules(mesh, rules):
        return jax.jit(lambda: flatten_state(nnx.state(ae_factory())), out_shardings=model.ae_shardings)()


def without_remat(config, model: Model, mesh: Mesh, rules) -> Model:
    """``model`` rebuilt with ``remat_policy="none"`` (same parameter names, shapes and
    shardings) for forward-only use: gradient checkpointing does nothing without a backward
    pass, and ``nnx.remat`` cannot trace inside a sampler's scan over a model merged outside it."""
    if model.config.unet.remat_policy == "none":
        return model
    config = config.copy_and_resolve_references()
    config.model.unet.remat_policy = "none"
    return abstract_model(config, mesh, rules)


def load_autoencoder(config, model: Model, mesh: Mesh, rules, log=print) -> dict:
    """The frozen autoencoder exactly as a run uses it, on a fresh start AND on resume.

    A KL-VAE comes from ``init.pretrained`` when the config names one (its ``vae``
    component); otherwise (space-to-depth has no parameters, or a test's random VAE) the
    seeded init of :func:`init_autoencoder`, which is the same on every call. The autoencoder
    is not part of the train state, so a resumed run must rebuild it this way; the trainer
    also checks :func:`fingerprint` against the one written at the run's start.
    """
    ae = init_autoencoder(config, model, mesh, rules)
    if config.init.pretrained and config.autoencoder.kind == "vae":
        from mimaface_jax.training import pretrained_init

        ae = pretrained_init.load_autoencoder(config, model, ae, log)
    return ae


def fingerprint(params: dict) -> dict[str, list[float]]:
    """``{name: [sum, sum of squares]}`` (float64 on the host) of each array: a cheap digest
    that tells whether two runs use the same frozen weights."""
    sums = jax.jit(lambda p: {n: (jnp.sum(x.astype(jnp.float32)), jnp.sum(jnp.square(x.astype(jnp.float32))))
                              for n, x in p.items()})(params)
    return {n: [float(a), float(b)] for n, (a, b) in sorted(jax.device_get(sums).items())}


def param_bytes(abstract: dict[str, jax.ShapeDtypeStruct]) -> tuple[int, int]:
    """(total bytes, bytes on the most loaded device) of sharded abstract arrays."""
    total, per_device = 0, {}
    for x in abstract.values():
        nbytes = x.dtype.itemsize
        total += x.size * nbytes
        shard = x.sharding.shard_shape(x.shape)
        size = 1
        for d in shard:
            size *= d
        for device in x.sharding.device_set:
            per_device[device] = per_device.get(device, 0) + size * nbytes
    return total, max(per_device.values()) if per_device else 0
