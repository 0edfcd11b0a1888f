"""remat_in_order: the same gradients as no checkpointing, and the layers' backward passes
really run one after another (XLA's planned temporaries of a stack of layers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mimaface_jax.models.remat_in_order import remat_in_order

WIDTH, HIDDEN, ROWS, LAYERS = 64, 1024, 512, 8


class _Layer(nnx.Module):
    """x + MLP(x), masked rows zeroed: x (ROWS, WIDTH), keep (ROWS,) bool or None."""

    def __init__(self, rngs):
        self.up = nnx.Linear(WIDTH, HIDDEN, rngs=rngs)
        self.down = nnx.Linear(HIDDEN, WIDTH, rngs=rngs)

    def __call__(self, x, scale, keep):
        h = self.down(jax.nn.gelu(self.up(x))) * scale
        if keep is not None:
            h = jnp.where(keep[:, None], h, 0.0)
        return x + h


def _call(layer, x, scale, keep):
    return layer(x, scale, keep)


class _Stack(nnx.Module):
    def __init__(self, wrap, rngs):
        self.layers = nnx.List([_Layer(rngs) for _ in range(LAYERS)])
        self.wrap = wrap

    def __call__(self, x, scale, keep):
        call = {"none": _call, "remat": nnx.remat(_call, prevent_cse=True), "in_order": remat_in_order(_call)}[
            self.wrap
        ]
        for layer in self.layers:
            x = call(layer, x, scale, keep)
        return x


def _loss_and_state(wrap):
    graphdef, state = nnx.split(_Stack(wrap, nnx.Rngs(0)))

    def loss(state, x, scale, keep):
        return jnp.sum(nnx.merge(graphdef, state)(x, scale, keep) ** 2)

    return loss, state


def _inputs():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((ROWS, WIDTH)).astype(np.float32))
    keep = jnp.asarray(rng.random(ROWS) > 0.3)
    return x, jnp.float32(0.7), keep


def test_gradients_equal_no_checkpointing():
    x, scale, keep = _inputs()
    grads = {}
    for wrap in ("none", "in_order"):
        loss, state = _loss_and_state(wrap)
        grads[wrap] = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(state, x, scale, keep)
    ref, got = grads["none"], grads["in_order"]
    # not vacuous: the boolean argument changes the gradients, the scale gets one
    loss, state = _loss_and_state("none")
    unmasked = jax.jit(jax.grad(loss, argnums=1))(state, x, scale, jnp.ones_like(keep))
    assert float(jnp.abs(unmasked - ref[1]).max()) > 1e-2
    assert float(jnp.abs(ref[2])) > 0
    assert jax.tree.structure(got) == jax.tree.structure(ref)
    worst = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), ref, got)))
    assert worst <= 1e-5 * max(1.0, float(jnp.abs(ref[2]))), f"max |grad diff| {worst:.3g}"


def test_none_argument_passes_through():
    x, scale, _ = _inputs()
    loss, state = _loss_and_state("in_order")
    ref_loss, _ = _loss_and_state("none")
    got = jax.grad(loss, argnums=1)(state, x, scale, None)
    ref = jax.grad(ref_loss, argnums=1)(state, x, scale, None)
    assert float(jnp.abs(got - ref).max()) <= 1e-5 * float(jnp.abs(ref).max())


def _temporaries(wrap) -> int:
    x, scale, keep = _inputs()
    loss, state = _loss_and_state(wrap)
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(state, x, scale, keep).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_layers_are_recomputed_one_at_a_time():
    """Per-layer ``nnx.remat`` lets XLA's CPU scheduler recompute every layer's hidden
    activations (ROWS x HIDDEN fp32 = 2 MiB each) and keep them all for the deferred weight
    gradients: its temporaries are no smaller than without checkpointing. In order, at most
    two layers' backward working sets are live (about 4 hidden-sized buffers each: the up
    projection, its GELU and their gradients), whatever the number of layers."""
    hidden = ROWS * HIDDEN * 4
    none, remat, in_order = _temporaries("none"), _temporaries("remat"), _temporaries("in_order")
    assert remat >= min(none, LAYERS * hidden), f"the premise: per-layer nnx.remat holds {remat / hidden:.1f} hidden"
    assert in_order <= 2 * 4 * hidden, f"remat_in_order holds {in_order / hidden:.1f} hidden-sized buffers"
    assert in_order <= remat / 3


def _dot_count(jaxpr) -> int:
    """dot_general equations in ``jaxpr`` and every jaxpr nested in it."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == "dot_general"
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                count += _dot_count(inner)
    return count


def test_frozen_weights_get_no_weight_gradient_matmuls():
    """Differentiating only the input (all weights frozen): the backward recomputes each
    layer's forward (2 matmuls) and propagates the input gradient (2), with no weight-gradient
    matmuls; the gradient is the plain one."""
    x, scale, keep = _inputs()
    counts, grads = {}, {}
    for wrap in ("none", "in_order"):
        loss, state = _loss_and_state(wrap)
        grad = jax.grad(lambda x: loss(state, x, scale, keep))
        counts[wrap] = _dot_count(jax.make_jaxpr(grad)(x).jaxpr)
        grads[wrap] = jax.jit(grad)(x)
    assert counts["none"] == LAYERS * (2 + 2)  # forward + input gradient
    assert counts["in_order"] == LAYERS * (2 + 2 + 2)  # + one recomputed forward
    assert float(jnp.abs(grads["in_order"] - grads["none"]).max()) <= 1e-5 * float(jnp.abs(grads["none"]).max())
