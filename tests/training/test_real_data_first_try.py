"""A new user's first run on real videos: a ``video_folder`` dataset (FaceMesh records of
warped-astronaut videos, splits ``train`` / ``test`` only, no ArcFace identities).

- The run checks its splits before compiling: the sample split ``validation`` does not exist,
  so it takes the held-out ``test`` split (and says so), trains every step and writes its
  self-reenactment samples.
- The console is clean: with TensorFlow installed (TensorBoard writer on) and MediaPipe in the
  same process, stderr holds no ``Error`` / ``Traceback`` line, nor TensorFlow's oneDNN notice.
- The same run with identity modulation on (the data has no identities) stops before compiling
  with one message and exit 2, no traceback.
"""

import json
import re

import runner


def _flags(dataset, kit):
    return ["--config.data.source=tfds", f"--config.data.mixture={dataset.data_path}=1",
            "--config.data.tfds_data_dir=/nonexistent", "--config.model.mia.motion_layout=facemesh",
            f"--config.model.mia.num_expression={kit.NUM_EXPRESSION}", "--config.train.num_steps=4",
            "--config.checkpoint.every=4", "--config.sample.num_videos=2"]


def test_video_folder_run_without_validation_split(tmp_path, compile_cache, video_folder_dataset, kit):
    work = tmp_path / "w"
    r = runner.run(runner.command(work, *_flags(video_folder_dataset, kit),
                                  "--config.model.mia.identity_modulation=False", tensorboard=True),
                   compile_cache)
    assert r.returncode == 0, runner.output(r)
    assert "has no split 'validation'; using its held-out split 'test'" in r.stdout
    summary = json.loads((work / "eval_metrics.json").read_text())
    assert summary["split"] == "test" and len(summary["tasks"]) >= 1
    assert all(t["kind"] == "self" for t in summary["tasks"])
    assert list((work / "train").glob("events.out.tfevents.*")) or list(work.rglob("events.out.tfevents.*"))
    bad = [line for line in r.stderr.splitlines() if re.search(r"Error|Traceback|oneDNN", line)]
    assert not bad, "\n".join(bad)


def test_missing_identities_is_one_message(tmp_path, compile_cache, video_folder_dataset, kit):
    r = runner.run(runner.command(tmp_path / "w", *_flags(video_folder_dataset, kit)), compile_cache)
    assert r.returncode == 2, runner.output(r)
    assert "identity_modulation" in r.stderr and "Traceback" not in r.stderr
    assert "compiled the train step" not in r.stdout
