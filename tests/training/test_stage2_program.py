"""The stage-2 program end to end, as the SD-1.5 recipe runs it (at ``tiny.py:*_min`` size):
stage 1, then stage 2 started from it (its EMA weights by default), with the held-out sample
videos: several clips with k > 0 ICA context frames, the first anchored on the source
(``sample.source_as_context``), ``clip_denoised``, and their PSNR in the motion mask."""

import json

import numpy as np

import runner
from mimaface_jax.training import checkpointing
from mimaface_jax.training.samples import masked_psnr


def test_masked_psnr_hand_computed():
    target = np.zeros((2, 4, 4, 3), np.uint8)
    pred = target.copy()
    mask = np.zeros((2, 4, 4), bool)
    mask[0, 1, 2] = mask[1, 3, 3] = True
    pred[0, 1, 2] = 10          # squared errors inside the mask: 3 x 100 (pixel 1), 3 x 0 (pixel 2)
    pred[1, 0, 0] = 200         # outside the mask: ignored
    # mse = 300 / 6 = 50 -> 10 log10(255^2 / 50) = 31.1411 dB
    assert abs(masked_psnr(pred, target, mask) - 31.1411) < 1e-3
    assert np.isnan(masked_psnr(pred, target, np.zeros_like(mask)))


def test_stage1_then_stage2_from_its_ema_weights_with_samples(tmp_path, compile_cache, synth_dir):
    data = [f"--config.data.synth_dir={synth_dir}"]
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    r = runner.run(runner.command(stage1, *data), compile_cache)
    assert r.returncode == 0, runner.output(r)

    r = runner.run(runner.command(stage2, *data, f"--config.init.stage1_checkpoint={stage1}",
                                  "--config.sample.num_videos=2", "--config.sample.num_clips=2",
                                  variant="video_min"), compile_cache)
    assert r.returncode == 0, runner.output(r)
    assert "(step 12, ema weights)" in r.stdout, runner.output(r)

    # the U-Net weights stage 2 froze are stage 1's EMA, not its raw weights
    s1, s2 = runner.load_state(stage1, 12), runner.load_state(stage2, 12)
    shared = [n for n in s2["frozen"] if n in s1["ema"]]
    assert len(shared) > 20
    moved = [n for n in shared if not np.array_equal(s1["ema"][n], s1["trainable"][n])]
    assert len(moved) > 20  # EMA and raw weights differ after 12 steps
    for n in shared:
        np.testing.assert_array_equal(s2["frozen"][n], s1["ema"][n], err_msg=n)

    summary = json.loads((stage2 / "eval_metrics.json").read_text())
    assert summary["stage"] == "video" and summary["sampler"]["source_as_context"] is True
    assert summary["sampler"]["ica_generation_k"] == 2 and summary["sampler"]["clip_denoised"] == 1.0
    assert len(summary["tasks"]) == 2
    for task in summary["tasks"]:
        assert task["kind"] == "cross" and task["frames"] == 8  # 2 clips of F = 4
        assert np.isfinite(task["psnr_motion_mask"]) and np.isfinite(task["psnr_motion_mask_copy_source"])
    assert sorted(p.name for p in (stage2 / "samples" / "step_12").iterdir()) == [
        "grid_0.png", "grid_1.png", "video_0.mp4", "video_1.mp4"]

    # raw weights on request (init.stage1_weights="raw"): what the trainer's restore returns
    step, raw = checkpointing.restore_params_only(stage1, weights="raw")
    assert step == 12
    for n in moved:
        np.testing.assert_array_equal(raw[n], s1["trainable"][n], err_msg=n)

    # a stage-1 run of another model: the mismatch is named, one message, exit 2
    r = runner.run(runner.command(tmp_path / "mismatch", *data, f"--config.init.stage1_checkpoint={stage1}",
                                  "--config.model.unet.block_out_channels=(8,)", variant="video_min"),
                   compile_cache)
    assert r.returncode == 2, runner.output(r)
    assert "has shape" in r.stderr and "init.stage1_checkpoint" in r.stderr and "Traceback" not in r.stderr
