"""mimaface_jax.config_files: config files loaded by path, ``file.py:arg`` as ``--config`` reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

from mimaface_jax.config_files import ConfigFileError, load_config, load_module, split_spec

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _absl_config(spec: str):
    """The config absl's ``DEFINE_config_file`` (the trainer's ``--config``) builds from ``spec``."""
    values = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", None, "config file", flag_values=values)
    values(["prog", f"--config={spec}"])
    return holder.value


@pytest.mark.parametrize("spec", [f"{CONFIGS}/tiny.py:video_min", f"{CONFIGS}/sd15_stage2_video.py"])
def test_load_config_equals_what_the_config_flag_builds(spec):
    ours = load_config(spec)
    assert ours.to_dict() == _absl_config(spec).to_dict()


def test_argument_after_colon_or_positional_is_the_same():
    by_colon = load_config(f"{CONFIGS}/tiny.py:image_min")
    by_arg = load_config(CONFIGS / "tiny.py", "image_min")
    assert by_colon.to_dict() == by_arg.to_dict()
    assert by_colon.model.num_frames == 1
    assert load_config(f"{CONFIGS}/tiny.py:video_min").model.num_frames > 1


def test_split_spec():
    assert split_spec("configs/tiny.py:image") == ("configs/tiny.py", "image")
    assert split_spec("configs/tiny.py") == ("configs/tiny.py", None)
    # a colon inside the folder part is part of the path
    assert split_spec("/data/run:3/cfg.py") == ("/data/run:3/cfg.py", None)


def test_modules_are_fresh_and_named_after_their_file(tmp_path):
    path = tmp_path / "my_cfg.py"
    path.write_text("COUNTER = []\ndef get_config():\n    COUNTER.append(1)\n    return len(COUNTER)\n")
    first, second = load_module(path), load_module(path)
    assert first is not second
    assert first.get_config() == 1 and second.get_config() == 1
    assert "my_cfg" in first.__name__


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigFileError, match="config file not found: .*missing.py"):
        load_config(tmp_path / "missing.py")
    (tmp_path / "no_get.py").write_text("X = 1\n")
    with pytest.raises(ConfigFileError, match="no_get.py defines no get_config"):
        load_config(tmp_path / "no_get.py")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ConfigFileError, match="must be a .py file"):
        load_module(tmp_path / "notes.txt")
    with pytest.raises(ConfigFileError, match="either after ':' or as an argument"):
        load_config(f"{CONFIGS}/tiny.py:image", "video")
