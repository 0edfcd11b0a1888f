"""Injected faults: a NaN loss stops the run (last good checkpoint intact), a corrupt record
is skipped and counted, a bad config key / value fails before anything is compiled."""

import json
import shutil

import numpy as np
import pytest

import runner
from mimaface_jax.config_validation import ConfigError
from mimaface_jax.training import loop, synth_source, train_step


def test_nan_stops_with_diagnostic_and_corrupt_record_is_skipped(tmp_path, compile_cache, synth_tfds):
    """On the grain / TFDS source: record 1 of the train split does not parse."""
    from corrupt_records import corrupt_copy

    dataset = next(synth_tfds.glob("synth_faces/*/*/dataset_info.json")).parent
    data_dir = tmp_path / "tfds"
    corrupt_copy(dataset, data_dir / "synth_faces" / dataset.parent.name / dataset.name, "train", [1])
    work = tmp_path / "nan"
    # debug.nan_at_step=9: the 10th batch's float inputs become NaN (as a broken record would)
    r = runner.run(runner.command(work, "--config.debug.nan_at_step=9", "--config.data.source=tfds",
                                  f"--config.data.tfds_data_dir={data_dir}", "--config.data.mixture=synth_faces=1"),
                   compile_cache)
    assert r.returncode == 3, runner.output(r)
    assert "NON-FINITE at step 10" in r.stdout and "loss=nan" in r.stdout
    # counted once (it comes back every epoch: 4 records, 4 samples per step)
    assert r.stdout.count("data: skipped 1 corrupt record(s) (1 so far)") == 1
    assert f"{data_dir}/synth_faces/{dataset.parent.name}/{dataset.name} record 1;" in r.stdout
    records = runner.metrics(work)
    assert records[0] == {"step": 0, "data_skipped_records": 1.0}
    assert records[-1].get("non_finite") == 1.0 and records[-1]["step"] == 10
    # steps 1..9 trained, 10 was the NaN step: checkpoints 4 and 8 exist, nothing after
    assert runner.finished_steps(work) == [4, 8]
    assert max(runner.losses(work)) == 9
    state = runner.load_state(work, 8)
    assert int(state["step"]) == 8
    assert all(np.isfinite(v).all() for v in state["trainable"].values())


def test_synthetic_source_skips_and_counts_unreadable_videos(tmp_path, synth_dir):
    data_dir = tmp_path / "synth"
    shutil.copytree(synth_dir, data_dir)
    victim = json.loads((data_dir / "index.json").read_text())["files"]["train"][1]
    (data_dir / victim).write_bytes(b"this is not an npz file")
    videos, report = synth_source.load_split(data_dir, "train", 2)
    assert report["skipped"] == 1 and list(report["skipped_files"]) == [victim]
    assert len(videos) == len(json.loads((data_dir / "index.json").read_text())["files"]["train"]) - 1


def test_unknown_config_key_fails_before_compiling(tmp_path, compile_cache):
    r = runner.run(runner.command(tmp_path / "bad", "--config.train.num_stepz=5"), compile_cache, timeout=120)
    assert r.returncode != 0
    assert "num_stepz" in r.stderr
    assert "compiled" not in r.stdout and not (tmp_path / "bad" / "checkpoints").exists()


def test_inconsistent_config_fails_before_compiling(tmp_path, monkeypatch):
    def no_compile(*args, **kwargs):
        raise AssertionError("compiled although the config is invalid")

    monkeypatch.setattr(train_step, "compile_train_step", no_compile)
    c = runner.load_config("tiny", "image_min")
    c.data.global_batch_size = 3   # 8 devices in the test process, mesh fsdp = -1 -> 8
    with pytest.raises(ConfigError) as err:
        loop.run(c, str(tmp_path / "bad"))
    assert "data.global_batch_size=3 is not divisible by mesh data*fsdp = 1*8" in str(err.value)
    assert not (tmp_path / "bad").exists()
