"""init.pretrained: the U-Net / CLIP arrays of a pretrained checkpoint (the layout written by
``python -m mimaface_jax.convert all``) land in the trainer's sharded parameters; parameters
the checkpoint lacks keep their init; a shape mismatch names the parameter."""

import jax
import numpy as np
import pytest
from flax import nnx

import runner
from mimaface_jax.importers.pretrained_store import PretrainedStoreError, write_pretrained
from mimaface_jax.training import mesh_and_model, pretrained_init


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A pretrained checkpoint with a video_min model's U-Net (with motion modules) and CLIP
    (random values, seeded), as ``convert all`` lays it out."""
    c = runner.load_config("tiny", "video_min")
    _, factory, _ = mesh_and_model.model_factories(c)
    abstract = nnx.state(nnx.eval_shape(factory), nnx.Param)
    rng = np.random.default_rng(7)
    state = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(x.dtype), abstract)
    path = tmp_path_factory.mktemp("pretrained") / "store"
    write_pretrained(path, {"unet": state["unet"], "clip": state["clip"]}, {"note": "test"})
    flat = {n: np.asarray(v) for n, v in mesh_and_model.flatten_state(state).items()
            if n.startswith(("unet.", "clip."))}
    assert any("motion_modules" in n for n in flat)
    return path, flat


def test_image_stage_loads_unet_and_clip_sharded(store):
    path, stored = store
    c = runner.load_config("tiny", "image_min")
    c.init.pretrained = str(path)
    mesh, rules = mesh_and_model.build_mesh(c)
    model = mesh_and_model.abstract_model(c, mesh, rules)
    fresh, ae = mesh_and_model.init_params(c, model, mesh, rules)
    params, _ = pretrained_init.load_pretrained(c, model, fresh, ae, log=lambda _: None)
    loaded = [n for n in params if n.startswith(("unet.", "clip."))]
    assert len(loaded) > 50 and all(n in stored for n in loaded)
    for name in loaded:
        np.testing.assert_array_equal(np.asarray(params[name]), stored[name], err_msg=name)
        assert params[name].sharding == model.shardings[name], name
    assert not any("motion_modules" in n for n in params)  # image stage: not restored
    mia = [n for n in params if n.startswith("mia.")]
    assert mia and all(np.array_equal(np.asarray(params[n]), np.asarray(fresh[n])) for n in mia)
    kernels = [n for n in loaded if n.endswith("kernel")]
    # the store holds other (random) values: loading changed every kernel
    assert kernels and not any(np.array_equal(stored[n], np.asarray(fresh[n])) for n in kernels)
    assert jax.device_count() == 8 and any(
        len(params[n].sharding.device_set) == 8 and params[n].sharding.shard_shape(params[n].shape) != params[n].shape
        for n in loaded)  # some are really split over the fsdp axis


def test_shape_mismatch_names_the_parameter(store):
    path, _ = store
    c = runner.load_config("tiny", "image_min")
    c.init.pretrained = str(path)
    c.model.unet.block_out_channels = (8,)
    mesh, rules = mesh_and_model.build_mesh(c)
    model = mesh_and_model.abstract_model(c, mesh, rules)
    with pytest.raises(PretrainedStoreError) as err:
        pretrained_init.load_pretrained(c, model, {}, {}, log=lambda _: None)
    assert "unet.conv_in.kernel: (3, 3, 145, 16) in the checkpoint, (3, 3, 145, 8) in the model" in str(err.value)
