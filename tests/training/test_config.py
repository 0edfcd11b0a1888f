"""Config files load, and config_validation names the key of every inconsistency."""

from pathlib import Path

import pytest

from mimaface_jax.config_files import load_config
from mimaface_jax.config_validation import ConfigError, validate

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def load(name, *args):
    return load_config(CONFIGS / f"{name}.py", *args)


def test_shipped_configs_are_valid(tmp_path):
    validate(load("tiny", "image"), num_devices=8)
    validate(load("sd15_stage1_image"), num_devices=8)
    video = load("tiny", "video")
    video.init.stage1_checkpoint = str(tmp_path)
    validate(video, num_devices=4)
    sd2 = load("sd15_stage2_video")
    sd2.init.stage1_checkpoint = str(tmp_path)
    validate(sd2, num_devices=8)


def test_config_is_locked_against_new_keys():
    c = load("tiny", "image")
    with pytest.raises(AttributeError):
        c.train.num_stepz = 3


@pytest.mark.parametrize("edit, message", [
    (lambda c: setattr(c.data, "global_batch_size", 6), "data.global_batch_size=6 is not divisible by mesh data*fsdp = 1*4"),
    (lambda c: setattr(c.model, "num_frames", 30), "exceeds the motion modules' positional encoding length model.unet.motion_max_seq_length=16"),
    (lambda c: setattr(c.init, "stage1_checkpoint", ""), "init.stage1_checkpoint is empty"),
    (lambda c: setattr(c.init, "stage1_checkpoint", "/nonexistent/run"), "init.stage1_checkpoint='/nonexistent/run' is not a directory"),
    (lambda c: setattr(c.model.unet, "use_motion_module", False), "model.unet.use_motion_module=False"),
    (lambda c: setattr(c.data, "resolution", 60), "data.resolution=60 must be divisible by 8"),
    (lambda c: setattr(c.ema, "decay", 1.0), "ema.decay=1.0 must be in [0, 1)"),
    (lambda c: setattr(c.mesh, "data", 3), "mesh:"),
    (lambda c: (setattr(c.data, "source", "tfds"), setattr(c.data, "mixture", "voxceleb2:1")),
     "data.mixture='voxceleb2:1': expected 'name=weight,name=weight', bad part 'voxceleb2:1'"),
    (lambda c: setattr(c.data, "source", "tfds"), "data.tfds_data_dir is empty"),
    (lambda c: (setattr(c.data, "source", "tfds"), setattr(c.data, "use_cache", True)),
     "data.use_cache=True: batches carry cached CLIP tokens, set model.clip.enabled=False"),
    (lambda c: setattr(c.model.clip, "enabled", False), "model.clip.enabled=False needs cached CLIP tokens"),
])
def test_inconsistent_values_name_the_key(tmp_path, edit, message):
    c = load("tiny", "video")
    c.init.stage1_checkpoint = str(tmp_path)
    edit(c)
    with pytest.raises(ConfigError) as err:
        validate(c, num_devices=4)
    assert message in str(err.value)
