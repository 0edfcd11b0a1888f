"""Sample tasks on real-video (FaceMesh) records: self-reenactment of held-out clips, generated
and scored like the SynthFaces cross-identity samples (the real-scale configs sample these)."""

import json

import numpy as np
from PIL import Image

import runner
from mimaface_jax.training import mesh_and_model, optimizer, sample_tasks, samples, train_step


def facemesh_config(dataset, num_expression):
    c = runner.load_config("tiny", "image_min")
    c.data.source = "tfds"
    c.data.mixture = f"{dataset.data_path}=1"
    c.data.tfds_data_dir = "/nonexistent"  # the mixture names the version folder itself
    c.model.mia.motion_layout = "facemesh"
    c.model.mia.num_expression = num_expression
    c.sample.split = "test"
    c.sample.num_videos = 2
    return c


def test_self_reenactment_tasks_come_from_the_held_out_records(video_folder_dataset, kit):
    c = facemesh_config(video_folder_dataset, kit.NUM_EXPRESSION)
    tasks, where = sample_tasks.held_out_tasks(c, None, count=2, frames=8)
    records = video_folder_dataset.as_data_source("test")
    assert where == str(video_folder_dataset.data_path) and len(tasks) == min(2, len(records))
    for task, i in zip(tasks, range(len(records))):
        rec = records[i]
        assert task["kind"] == "self" and task["mask_threshold"] == sample_tasks.REAL_MASK_THRESHOLD
        assert task["source"].shape == (32, 32, 3) and task["truth"].shape == (8, 32, 32, 3)
        assert task["driving"] is task["truth"] or np.array_equal(task["driving"], task["truth"])
        d = 6 + kit.NUM_EXPRESSION + 4
        assert task["motion"].shape == (8, d) and task["source_motion"].shape == (d,)
        # pose fields of the motion are the records' stored pose of frames 1..8 (crop pixels
        # rescaled to the output size leaves the angles unchanged)
        np.testing.assert_allclose(task["motion"][:, :3], np.asarray(rec["motion"])[1:9, :3], atol=1e-3)
        assert task["condition"].shape == (8, 32, 32, 3) and task["condition"].max() > 0
        assert not np.array_equal(task["truth"][0], task["source"])


def test_write_samples_on_facemesh_data(video_folder_dataset, kit, tmp_path):
    c = facemesh_config(video_folder_dataset, kit.NUM_EXPRESSION)
    mesh, rules = mesh_and_model.build_mesh(c)
    model = mesh_and_model.abstract_model(c, mesh, rules)
    trainable, frozen = optimizer.split_trainable(model.spec.names, c)
    tx = optimizer.make_optimizer(c)
    state_abs = train_step.abstract_state(c, model, trainable, frozen, tx, mesh)
    params, ae = mesh_and_model.init_params(c, model, mesh, rules)
    state = train_step.initial_state(c, params, trainable, frozen, tx, state_abs)
    summary = samples.write_samples(c, model, state, ae, tmp_path, mesh, rules, log=lambda _: None)
    assert [t["kind"] for t in summary["tasks"]] == ["self", "self"] and summary["split"] == "test"
    for t in summary["tasks"]:
        assert t["frames"] == 8 and 0 < t["mask_fraction"] <= 1
        assert np.isfinite(t["psnr_motion_mask"]) and np.isfinite(t["psnr_motion_mask_copy_source"])
    assert json.loads((tmp_path / "eval_metrics.json").read_text()) == summary
    grid = np.asarray(Image.open(tmp_path / "samples" / "step_0" / "grid_0.png"))
    assert grid.shape == (8 * 32, 5 * 32, 3)  # source | driving | condition | generated | truth
