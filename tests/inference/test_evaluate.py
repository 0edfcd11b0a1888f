"""``python -m mimaface_jax.evaluate`` end to end on the tiny SynthFaces video model (random
weights) over a tiny held-out SynthFaces TFDS split and on a FaceMesh-layout model over a built
video_folder split; ``--ablate ica=off`` / ``motion_tokens=off``; rows independent of the device
count (data-parallel batches); its one-line errors."""

import json
import pathlib

import numpy as np
import pytest

from face_video_fixtures import video_folder_dataset, video_folder_layout  # noqa: F401

from mimaface_jax import evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]

# with animate / export: the same session fixtures (synth_workdir, facemesh_bundle) on one worker
pytestmark = pytest.mark.xdist_group("inference_facemesh_bundle")


def test_evaluate_writes_metrics_and_plots(synth_workdir, synth_data, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = evaluate.main(["--model", str(synth_workdir), "--data", f"{synth_data}:validation", "--out", str(out),
                        "--num_videos", "2", "--frames", "10"])
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["settings"]["split"] == "validation" and doc["settings"]["task_kind"] == "cross"
    assert doc["settings"]["frames"] == 10 and doc["settings"]["clip_frames"] == 4
    assert len(doc["samples"]) == 2
    for sample in doc["samples"]:
        assert sample["frames"] == 10 and sample["clip_starts"] == [0, 4, 8]
        for name in ("psnr", "ssim", "l1", "psnr_motion_mask", "psnr_motion_mask_copy_source",
                     "interclip_discontinuity", "interclip_discontinuity_ground_truth"):
            assert np.isfinite(sample["metrics"][name]), name
        assert len(sample["curves"]["psnr_motion_mask"]) == 10
    mean = doc["mean"]
    assert mean["psnr"] == pytest.approx(np.mean([s["metrics"]["psnr"] for s in doc["samples"]]))
    assert -1.0 <= mean["ssim"] <= 1.0
    assert set(doc["skipped"]) >= {"lpips", "fid", "fvd", "identity_similarity"}
    md = (out / "metrics.md").read_text()
    assert "| psnr_motion_mask |" in md and "lpips" in md
    for png in doc["plots"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "wrote" in capsys.readouterr().out

    # ica=off on the same weights: other frames (the clips after the first lose their context)
    out_off = tmp_path / "eval_ica_off"
    assert evaluate.main(["--model", str(synth_workdir), "--data", f"{synth_data}:validation", "--out",
                          str(out_off), "--num_videos", "1", "--frames", "10", "--ablate", "ica=off",
                          "--quiet"]) == 0
    off = json.loads((out_off / "metrics.json").read_text())
    assert off["settings"]["context_frames"] == 0 and off["settings"]["ablation"] == "ica=off"
    first_on, first_off = doc["samples"][0]["curves"]["ssim"], off["samples"][0]["curves"]["ssim"]
    assert first_on[:4] != first_off[:4] or first_on[4:] != first_off[4:]

    # motion_tokens=off: MIA's motion path cut at call time (same weights), recorded in the settings
    out_mt = tmp_path / "eval_motion_tokens_off"
    assert evaluate.main(["--model", str(synth_workdir), "--data", f"{synth_data}:validation", "--out",
                          str(out_mt), "--num_videos", "1", "--frames", "10", "--ablate", "motion_tokens=off",
                          "--quiet"]) == 0
    mt = json.loads((out_mt / "metrics.json").read_text())
    assert mt["settings"]["ablation"] == "motion_tokens=off"
    assert mt["settings"]["generation"]["mia_motion"] is False and mt["settings"]["generation"]["mia_identity"]
    assert doc["settings"]["generation"]["mia_motion"] and doc["settings"]["generation"]["mia_identity"]
    assert np.isfinite(mt["samples"][0]["metrics"]["psnr"])
    assert mt["samples"][0]["curves"]["ssim"] != first_on


@pytest.mark.parametrize("argv_tail, message", [
    (["--ablate", "identity=maybe"], "identity takes 'on' or 'off'"),
    (["--ablate", "ica=maybe"], "ica takes 'on' or 'off'"),
    (["--data", "SPLIT_PLACEHOLDER:nosuchsplit"], "has no split 'nosuchsplit'"),
    (["--data", "/nonexistent/dataset"], "is not a built dataset"),
])
def test_bad_input_is_one_line_error(synth_workdir, synth_data, tmp_path, capsys, argv_tail, message):
    argv = ["--model", str(synth_workdir), "--data", f"{synth_data}:validation", "--out", str(tmp_path / "o")]
    argv += [a.replace("SPLIT_PLACEHOLDER", str(synth_data)) for a in argv_tail]
    assert evaluate.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("evaluate: error: ") and message in err[-1]


def test_model_and_data_of_different_motion_layouts_is_one_line_error(facemesh_bundle, synth_data, tmp_path,
                                                                      capsys):
    bundle, _ = facemesh_bundle
    assert evaluate.main(["--model", str(bundle), "--data", str(synth_data), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("evaluate: error: ") and "does not match the model's" in err and "synth-v1" in err


def test_rows_do_not_depend_on_the_device_count(synth_workdir, synth_data, tmp_path):
    """Data-parallel evaluation: 2 videos on 1 device (a batch per video), on 2 devices (one
    batch split over them, in a subprocess: the fake device count is fixed per process) and on
    this process's 8 (one batch padded from 2 to 8) give the same rows."""
    import os
    import subprocess
    import sys

    from xla_flags import flags

    from mimaface_jax.inference.bundle import export

    bundle = tmp_path / "bundle"  # a workdir's Orbax state restores only on its own topology
    export(synth_workdir, bundle, log=lambda _: None)
    common = ["--model", str(bundle), "--data", f"{synth_data}:validation", "--num_videos", "2", "--frames", "6"]
    procs = {}
    for devices in (1, 2):
        env = dict(os.environ, XLA_FLAGS=flags(devices), JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
                   JAX_DEFAULT_MATMUL_PRECISION="highest")
        procs[devices] = subprocess.Popen(
            [sys.executable, "-m", "mimaface_jax.evaluate", *common, "--out", str(tmp_path / str(devices))],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert evaluate.main([*common, "--out", str(tmp_path / "8"), "--quiet"]) == 0
    docs = {8: json.loads((tmp_path / "8" / "metrics.json").read_text())}
    for devices, proc in procs.items():
        log = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, log[-3000:]
        assert f"batch {3 - devices}/{3 - devices} " in log and f"batch {4 - devices}/" not in log, log[-2000:]
        docs[devices] = json.loads((tmp_path / str(devices) / "metrics.json").read_text())
    for devices, doc in docs.items():
        assert doc["settings"]["devices"] == devices == doc["settings"]["batch_size"]
    one = docs[1]["samples"]
    assert len(one) == 2 and one[0]["task"] != one[1]["task"]
    for devices in (2, 8):
        rows = docs[devices]["samples"]
        assert [(r["task"], r["seed"]) for r in rows] == [(r["task"], r["seed"]) for r in one]
        for a, b in zip(one, rows):
            assert set(a["metrics"]) == set(b["metrics"])
            for name, value in a["metrics"].items():  # None: NaN (e.g. no face found in a frame)
                want = pytest.approx(value, rel=1e-3, abs=1e-3) if value is not None else None
                assert b["metrics"][name] == want, (devices, a["task"], name)


def test_evaluate_self_reenactment_on_facemesh_data(facemesh_bundle, video_folder_dataset, tmp_path):
    """A FaceMesh-layout model over a built video_folder dataset: self-reenactment tasks, the
    FaceMesh motion metrics run (a random 32^2 model's frames may hold no face: their motion
    errors are then NaN and the frames are counted, never an exception)."""
    bundle, _ = facemesh_bundle
    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(bundle), "--data", f"{video_folder_dataset.data_path}:test",
                          "--out", str(out), "--num_videos", "1", "--frames", "6", "--quiet"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["settings"]["task_kind"] == "self" and doc["settings"]["split"] == "test"
    m = doc["samples"][0]["metrics"]
    assert np.isfinite(m["psnr"]) and np.isfinite(m["interclip_discontinuity"])
    assert 0 <= m["frames_without_face_generated"] <= 6 and "aed" in m and "landmark_jitter" in m
    assert "aed_apd_gaze_jitter" not in doc["skipped"]


def test_ablation_switches_parse():
    assert evaluate.parse_ablations([]) == {}
    assert evaluate.parse_ablations(["ica=off", "guidance=2.5"]) == {"ica": False, "guidance": 2.5}
    assert evaluate.parse_ablations(["ica=on"]) == {"ica": True}
    assert evaluate.parse_ablations(["motion_tokens=off", "identity=off"]) == {"motion_tokens": False,
                                                                              "identity": False}
    assert evaluate.parse_ablations(["identity=on"]) == {"identity": True}
    for bad, message in (("guidance=high", "takes a number"), ("guidance=-1", ">= 0"), ("ica", "expected one of"),
                         ("temperature=2", "expected one of"), ("identity=no", "identity takes 'on' or 'off'"),
                         ("motion_tokens=", "motion_tokens takes 'on' or 'off'"),
                         ("motion=off", "expected one of")):
        with pytest.raises(evaluate.EvaluateError, match=message):
            evaluate.parse_ablations([bad])


def test_a_path_the_model_was_trained_without_cannot_be_cut():
    import dataclasses

    from mimaface_jax.models.mia import MIAConfig

    both = MIAConfig()
    evaluate.check_mia_switches({"motion_tokens": False, "identity": False}, both)
    for key, switch in (("motion_tokens", "motion_modulation"), ("identity", "identity_modulation")):
        without = dataclasses.replace(both, **{switch: False})
        evaluate.check_mia_switches({key: True}, without)
        with pytest.raises(evaluate.EvaluateError, match=f"no MIA .* path to cut .*model.mia.{switch} off"):
            evaluate.check_mia_switches({key: False}, without)
