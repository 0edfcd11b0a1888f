"""SD-1.5-scale stage-1 and stage-2 configs on 8 fake CPU devices with fsdp = 8: the sharded abstract train
state is built and the train step LOWERS against abstract inputs (no full weights allocated);
each device holds about 1/8 of the parameter + optimizer bytes."""

import re
from pathlib import Path

import jax
import pytest

from mimaface_jax.config_files import load_config
from mimaface_jax.config_validation import validate
from mimaface_jax.training import mesh_and_model, optimizer, train_step

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def load(name):
    return load_config(CONFIGS / f"{name}.py")


@pytest.mark.parametrize("name, low, high", [
    # SD-1.5 U-Net (860M) + AnimateDiff motion modules (~420M) + CLIP ViT-L/14 vision (303M) + MIA
    ("sd15_stage2_video", 1.5e9, 1.7e9),
    # the same without motion modules
    ("sd15_stage1_image", 1.1e9, 1.3e9),
])
def test_sd15_configs_shard_over_fsdp_8_and_lower(tmp_path, name, low, high):
    assert jax.device_count() == 8
    c = load(name)
    if c.stage == "video":
        c.init.stage1_checkpoint = str(tmp_path)
    c.mesh.fsdp = 8
    c.data.global_batch_size = 8
    validate(c, num_devices=8)
    mesh, rules = mesh_and_model.build_mesh(c)
    model = mesh_and_model.abstract_model(c, mesh, rules)
    trainable, frozen = optimizer.split_trainable(model.spec.names, c)
    tx = optimizer.make_optimizer(c)
    state = train_step.abstract_state(c, model, trainable, frozen, tx, mesh)

    n_params = sum(x.size for x in model.abstract_params.values())
    assert low < n_params < high, n_params
    leaves = {f"leaf{i}": x for i, x in enumerate(jax.tree.leaves(state))}
    total, per_device = mesh_and_model.param_bytes(leaves)
    assert abs(per_device - total / 8) / (total / 8) < 0.02, (per_device, total / 8)

    lowered = train_step.compile_train_step(c, model, tx, state, mesh, rules)
    text = lowered.as_text()
    # the program's arguments carry the fsdp shardings (Shardy: the mesh and per-axis specs)
    assert '"fsdp"=8' in text and re.search(r'sdy\.sharding<@mesh, \[\{"fsdp"\}', text), text[:2000]
