"""Which parameters each stage trains (by name), the ``optimizer.trainable`` override, and the
AdamW weight-decay mask (decay on kernels / tables of ndim >= 2 only), on the tiny configs.

Expected name sets are written with plain string tests (prefixes, substrings), not with the
regexes of ``training/optimizer.py``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import runner
from mimaface_jax.config_validation import ConfigError
from mimaface_jax.training import mesh_and_model, optimizer


def _load(variant):
    config = runner.load_config("tiny", variant)
    mesh, rules = mesh_and_model.build_mesh(config)
    return config, mesh_and_model.abstract_model(config, mesh, rules)


@pytest.fixture(scope="module")
def image():
    return _load("image_min")


@pytest.fixture(scope="module")
def video():
    return _load("video_min")


def _split(config, model):
    trainable, frozen = optimizer.split_trainable(model.spec.names, config)
    assert sorted(trainable + frozen) == sorted(model.spec.names)  # a partition of all names
    assert len(set(trainable)) == len(trainable)
    return set(trainable), set(frozen)


@pytest.mark.parametrize("clip_trainable", [False, True])
def test_image_stage_trains_unet_and_mia_and_clip_when_asked(image, clip_trainable):
    config, model = image
    config = config.copy_and_resolve_references()
    config.model.clip.trainable = clip_trainable
    names = set(model.spec.names)
    tops = {"unet", "mia"} | ({"clip"} if clip_trainable else set())
    assert {n.split(".")[0] for n in names} == {"unet", "mia", "clip"}
    trainable, frozen = _split(config, model)
    assert trainable == {n for n in names if n.split(".")[0] in tops}
    assert frozen == names - trainable
    assert ("clip.embeddings.patch_embedding.kernel" in trainable) == clip_trainable


def test_video_stage_trains_motion_modules_and_conv_in(video):
    config, model = video
    assert config.optimizer.trainable == ""  # the stage default, not an override
    names = set(model.spec.names)
    expected = {n for n in names
                if n.startswith("unet.conv_in.") or (n.startswith("unet.") and ".motion_modules." in n)}
    trainable, frozen = _split(config, model)
    assert trainable == expected
    assert {"unet.conv_in.kernel", "unet.conv_in.bias"} <= trainable
    # motion modules of the down and the up path; MIA (incl. its motion attention), CLIP and
    # the rest of the U-Net stay frozen
    assert any(n.startswith("unet.down_blocks.") for n in trainable)
    assert any(n.startswith("unet.up_blocks.") for n in trainable)
    assert any(n.startswith("mia.motion_attn.") for n in frozen)
    assert not any(n.startswith(("mia.", "clip.")) for n in trainable)
    assert any(n.startswith("unet.down_blocks.0.resnets.") for n in frozen)


@pytest.mark.parametrize("variant", ["image", "video"])
def test_trainable_override_selects_exactly_its_names(image, video, variant):
    config, model = {"image": image, "video": video}[variant]
    config = config.copy_and_resolve_references()
    config.optimizer.trainable = r"^mia\.mapper\.|\.conv_in\.kernel$"
    names = set(model.spec.names)
    trainable, frozen = _split(config, model)
    assert trainable == {n for n in names if n.startswith("mia.mapper.") or n.endswith(".conv_in.kernel")}
    assert "unet.conv_in.kernel" in trainable and "unet.conv_in.bias" in frozen
    assert frozen == names - trainable


@pytest.mark.parametrize("pattern, message", [
    (r"^unet\.(", r"optimizer.trainable='\^unet\\\\.\(' is not a valid regex"),
    (r"^no_such_module\.", r"optimizer.trainable='\^no_such_module\\\\.' \(stage 'image'\) selects no parameter"),
])
def test_bad_trainable_override_is_a_config_error(image, pattern, message):
    config, model = image
    config = config.copy_and_resolve_references()
    config.optimizer.trainable = pattern
    with pytest.raises(ConfigError, match=message):
        optimizer.split_trainable(model.spec.names, config)


def test_weight_decay_only_on_tensors_of_ndim_2_or_more(image):
    """One AdamW update with zero gradients: Adam's step is 0, so only decoupled weight decay
    moves a parameter: p -> p * (1 - lr * wd) for kernels / tables, unchanged for biases, norm
    scales and 1-D embeddings. warmup_steps = 0: the learning rate of the first step is the peak."""
    config, model = image
    config = config.copy_and_resolve_references()
    config.optimizer.warmup_steps = 0
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 0.5
    trainable, _ = _split(config, model)
    rng = np.random.default_rng(0)
    params = {n: jnp.asarray(rng.uniform(0.5, 1.5, model.abstract_params[n].shape), jnp.float32)
              for n in sorted(trainable)}
    zeros = {n: jnp.zeros_like(p) for n, p in params.items()}
    tx = optimizer.make_optimizer(config)
    updates, _ = tx.update(zeros, tx.init(params), params)
    decayed = {n for n, p in params.items() if p.ndim >= 2}
    assert {"unet.conv_in.kernel", "clip.embeddings.position_embedding", "mia.proj_in.kernel"} <= decayed
    kept = set(params) - decayed
    assert {"unet.conv_in.bias", "mia.mapper.0.norm1.scale", "clip.embeddings.class_embedding"} <= kept
    for n in decayed:
        np.testing.assert_allclose(np.asarray(params[n] + updates[n]), np.asarray(params[n]) * (1 - 0.1 * 0.5),
                                   rtol=1e-6, err_msg=n)
    for n in kept:
        np.testing.assert_array_equal(np.asarray(updates[n]), 0.0, err_msg=n)
