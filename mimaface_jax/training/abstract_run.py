"""Everything a run decides before any array exists: mesh, rules, abstract model, the trainable /
frozen split, the optimizer and the abstract (sharded) train state. The trainer, the benches
and the tests that restore checkpoints build it the same way through :func:`abstract_run`."""

from __future__ import annotations

from typing import Any, NamedTuple

import optax
from jax.sharding import Mesh

from mimaface_jax.training import mesh_and_model, optimizer, train_step


class AbstractRun(NamedTuple):
    mesh: Mesh
    rules: tuple
    model: mesh_and_model.Model
    trainable: list[str]
    frozen: list[str]
    tx: optax.GradientTransformation
    state: dict[str, Any]  # ShapeDtypeStructs with shardings (train_step.abstract_state)


def abstract_run(config) -> AbstractRun:
    """Allocates nothing; the config is assumed validated (``config_validation.validate``)."""
    mesh, rules = mesh_and_model.build_mesh(config)
    model = mesh_and_model.abstract_model(config, mesh, rules)
    trainable, frozen = optimizer.split_trainable(model.spec.names, config)
    tx = optimizer.make_optimizer(config)
    state = train_step.abstract_state(config, model, trainable, frozen, tx, mesh)
    return AbstractRun(mesh, rules, model, trainable, frozen, tx, state)
