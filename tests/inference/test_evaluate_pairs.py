"""``python -m mimaface_jax.evaluate --pairs DIR``: a folder of (source, driving) pairs written by
the synth_faces CLI evaluates on the tiny SynthFaces model (exact ground truth); pairs.csv;
scoring without ground truth; each bad input is one line, exit status 1 and no output."""

import json
import shutil

import numpy as np
import pytest

from mimaface_jax import evaluate
from mimaface_jax.inference import pair_tasks

pytestmark = pytest.mark.xdist_group("inference_facemesh_bundle")

FRAMES = 10   # the synth_data videos' length: 2.5 clips of the tiny model (F = 4)


@pytest.fixture(scope="module")
def synth_files(synth_data, tmp_path_factory):
    """{"a": (person.npz, motion.npz), "b": ...}: person 0 driven by person 1 and the reverse,
    written by ``python -m mimaface_jax.data.synth_faces``."""
    from mimaface_jax.data import synth_faces

    out = {}
    for name, person, driver in (("a", 0, 1), ("b", 1, 0)):
        folder = tmp_path_factory.mktemp(f"synth_pair_{name}")
        assert synth_faces.main(["--dataset", str(synth_data), "--out_dir", str(folder), "--person", str(person),
                                 "--driver", str(driver)]) == 0
        out[name] = (folder / "person.npz", folder / "motion.npz")
    return out


def pairs_dir(root, pairs: dict):
    """root/<name>/source.<ext> + driving.<ext> copied from {name: (source file, driving file)}."""
    for name, (source, driving) in pairs.items():
        (root / name).mkdir(parents=True)
        shutil.copy(source, root / name / f"source{source.suffix}")
        shutil.copy(driving, root / name / f"driving{driving.suffix}")
    return root


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("evaluate:")]
    assert len(err) == 1, err
    assert err[0].startswith("evaluate: error: ")
    return err[0]


def test_synth_pairs_evaluate_with_exact_truth(synth_workdir, synth_files, tmp_path, capsys):
    folder = pairs_dir(tmp_path / "pairs", synth_files)
    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(synth_workdir), "--pairs", str(folder), "--out", str(out),
                          "--frames", str(FRAMES), "--quiet"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    s = doc["settings"]
    assert s["split"] is None and s["task_kind"] == "cross" and s["data"] == str(folder.absolute())
    assert [p[0] for p in s["pairs"]] == ["a", "b"]
    assert s["pairs"][0][1].endswith("a/source.npz") and s["pairs"][0][2].endswith("a/driving.npz")
    assert [r["task"] for r in doc["samples"]] == ["a", "b"]
    for sample in doc["samples"]:
        assert sample["frames"] == FRAMES and sample["clip_starts"] == [0, 4, 8]
        for name in ("psnr", "ssim", "psnr_motion_mask", "psnr_motion_mask_copy_source", "interclip_discontinuity",
                     "interclip_discontinuity_ground_truth", "flicker"):
            assert np.isfinite(sample["metrics"][name]), name
    assert "ground_truth_metrics" not in doc["skipped"] and "identity_similarity" in doc["skipped"]
    assert "pairs of `" in (out / "metrics.md").read_text()
    assert (out / "worst_best.png").is_file() and (out / "curves_1.png").is_file()
    assert "PSNR in motion mask" in capsys.readouterr().out


def test_synth_pair_task_is_the_person_under_relative_motion(synth_workdir, synth_files):
    """The task of a SynthFaces pair, checked against the files and SynthFaces directly: the
    identity code of the person file, pose / expression = source + driving change from the first
    driving frame, gaze = the driving's, truth = the person rendered under that motion."""
    from mimaface_jax.data import synth_render
    from mimaface_jax.data.synth_faces import SynthFaces, SynthFacesConfig, cross_reenactment
    from mimaface_jax.inference.bundle import load_model

    loaded = load_model(str(synth_workdir), log=lambda _: None)
    person_file, motion_file = synth_files["a"]
    task = pair_tasks.make_task(pair_tasks.Pair("a", str(person_file), str(motion_file)), loaded, 6)
    person_npz, motion_npz = np.load(person_file), np.load(motion_file)
    person = SynthFaces(SynthFacesConfig(**json.loads(str(person_npz["generator"])))).identity(
        int(person_npz["identity_id"]))
    src, drv = person_npz["source_motion"], motion_npz["motion"][:6]
    gaze = loaded.layout.group_indices("gaze")
    moved = np.setdiff1d(np.arange(loaded.layout.size), gaze)
    np.testing.assert_allclose(task["motion"][:, moved], src[moved] + drv[:, moved] - drv[0, moved], atol=1e-6)
    np.testing.assert_allclose(task["motion"][:, gaze], drv[:, gaze], atol=1e-6)
    np.testing.assert_array_equal(task["identity"], person_npz["identity_code"])
    np.testing.assert_array_equal(task["truth"], cross_reenactment(person, task["motion"], 32))
    np.testing.assert_array_equal(task["condition"][2], synth_render.render_condition(person, task["motion"][2], 32))
    assert task["source"].shape == (32, 32, 3) and task["driving"] is None


def test_pairs_csv_lists_the_pairs(synth_files, tmp_path):
    (tmp_path / "files").mkdir()
    for name, (person, motion) in synth_files.items():
        shutil.copy(person, tmp_path / "files" / f"{name}_person.npz")
        shutil.copy(motion, tmp_path / "files" / f"{name}_motion.npz")
    (tmp_path / "ignored").mkdir()   # subfolders do not count when pairs.csv exists
    (tmp_path / "pairs.csv").write_text("name,source,driving\n# comment\nfirst,files/b_person.npz,files/a_motion.npz\n"
                                        "\nsecond , files/a_person.npz , files/b_motion.npz\n")
    pairs = pair_tasks.find_pairs(str(tmp_path))
    assert [(p.name, p.source, p.driving) for p in pairs] == [
        ("first", str(tmp_path / "files/b_person.npz"), str(tmp_path / "files/a_motion.npz")),
        ("second", str(tmp_path / "files/a_person.npz"), str(tmp_path / "files/b_motion.npz"))]
    (tmp_path / "pairs.csv").write_text("first,files/b_person.npz,files/missing.npz\n")
    with pytest.raises(pair_tasks.PairError, match=r"pairs.csv:1: .*missing.npz does not exist"):
        pair_tasks.find_pairs(str(tmp_path))
    (tmp_path / "pairs.csv").write_text("x,files/b_person.npz\n")
    with pytest.raises(pair_tasks.PairError, match=r"pairs.csv:1: a line is 'name,source,driving'"):
        pair_tasks.find_pairs(str(tmp_path))


def test_a_frames_folder_is_a_driving_and_other_files_are_not(tmp_path):
    pair = tmp_path / "p"
    (pair / "driving").mkdir(parents=True)
    (pair / "source.jpg").write_bytes(b"x")
    assert pair_tasks.find_pairs(str(tmp_path))[0].driving == str(pair / "driving")
    (pair / "source.jpg").rename(pair / "source.txt")
    with pytest.raises(pair_tasks.PairError, match="source .*source.txt is neither an image"):
        pair_tasks.find_pairs(str(tmp_path))


def test_without_truth_only_truthless_metrics_are_scored(tmp_path):
    """truth None: discontinuity and flicker (over the pixels the condition never changes) only;
    the report writes its files with the generated rows alone."""
    from mimaface_jax.metrics.report import write_report
    from mimaface_jax.metrics.score_task import score_task

    t, r = 8, 16
    condition = np.zeros((t, r, r, 3), np.uint8)
    condition[:, 4:12, 4:12] = np.arange(t, dtype=np.uint8)[:, None, None, None] * 20    # the face region moves
    generated = np.full((t, r, r, 3), 100, np.uint8)
    generated[4:] = 110                    # a jump at the clip boundary 4, everywhere
    task = {"name": "p", "kind": "cross", "source": generated[0], "condition": condition, "truth": None,
            "driving": None, "mask_threshold": 0}
    row = score_task(task, generated, clip_frames=4)
    m = row["metrics"]
    assert set(m) == {"flicker", "interclip_discontinuity"}
    # one change of 10 levels over 7 frame pairs, on the background
    assert m["flicker"] == pytest.approx(10 / 255 / 7)
    assert np.isnan(m["interclip_discontinuity"])   # no change inside the clips to compare with
    generated[1:4] = 101                   # now small changes inside the clips too
    m = score_task(task, generated, clip_frames=4)["metrics"]
    # boundary change 9 levels vs within-clip changes (1 + 0 + 0 + 0 + 0 + 0) / 6 levels
    assert m["interclip_discontinuity"] == pytest.approx(9 / (1 / 6))
    doc = write_report(tmp_path, {"model": {"path": "m"}, "data": "pairs_dir", "split": None, "task_kind": "cross",
                                  "clip_frames": 4, "ablation": ""}, [row], {"ground_truth_metrics": "none"},
                       [(generated[0], generated, None)])
    assert "no ground truth" in doc["worst_best"]
    assert "pairs of `pairs_dir`" in (tmp_path / "metrics.md").read_text()
    assert (tmp_path / "worst_best.png").is_file() and (tmp_path / "curves_0.png").is_file()


def test_pairs_and_data_are_exclusive(capsys):
    for argv in (["--model", "m", "--out", "o"], ["--model", "m", "--data", "d", "--pairs", "p", "--out", "o"]):
        with pytest.raises(SystemExit) as exc:
            evaluate.parse_args(argv)
        assert exc.value.code == 2
        assert "--data" in capsys.readouterr().err


def _bad_folder(kind, root, synth_files):
    person, motion = synth_files["a"]
    folder = root / "pairs"
    if kind == "missing":
        return root / "nowhere"
    folder.mkdir()
    if kind == "empty":
        (folder / "notes.txt").write_text("no pairs here")
    elif kind == "no_driving":
        (folder / "p").mkdir()
        shutil.copy(person, folder / "p" / "source.npz")
    elif kind == "two_sources":
        pairs_dir(folder, {"p": (person, motion)})
        (folder / "p" / "source.png").write_bytes(b"\x89PNG")
    elif kind == "corrupt":
        pairs_dir(folder, {"p": (person, motion)})
        (folder / "p" / "source.npz").write_bytes(b"PK\x03\x04" + bytes(200))
    elif kind == "image_for_synth":
        pairs_dir(folder, {"p": (person, motion)})
        (folder / "p" / "source.npz").rename(folder / "p" / "source.png")
    return folder


@pytest.mark.parametrize("kind, message", [
    ("missing", "no such folder"),
    ("empty", "no pairs"),
    ("no_driving", "pair p: no driving.* in"),
    ("two_sources", "pair p: 2 source candidates"),
    ("corrupt", "pair p: "),
    ("image_for_synth", "source.png is an image; the model's motion layout is 'synth-v1'"),
])
def test_bad_pairs_folder_is_one_line_error(synth_workdir, synth_files, tmp_path, capsys, kind, message):
    folder = _bad_folder(kind, tmp_path, synth_files)
    out = tmp_path / "out"
    assert evaluate.main(["--model", str(synth_workdir), "--pairs", str(folder), "--out", str(out), "--quiet"]) == 1
    line = one_error_line(capsys)
    assert message in line
    if kind == "corrupt":
        assert "source.npz: not a readable .npz file" in line
    assert not out.exists()


def test_synthfaces_files_for_a_facemesh_model_are_one_line_errors(facemesh_bundle, synth_files, animate_inputs,
                                                                    tmp_path, capsys):
    bundle, _ = facemesh_bundle
    person, motion = synth_files["a"]
    folder = pairs_dir(tmp_path / "person", {"p": (person, animate_inputs["driving"])})
    assert evaluate.main(["--model", str(bundle), "--pairs", str(folder), "--out", str(tmp_path / "o"),
                          "--quiet"]) == 1
    line = one_error_line(capsys)
    assert "source.npz is a .npz (a SynthFaces person file)" in line and "motion layout is 'facemesh" in line

    loaded_folder = pairs_dir(tmp_path / "motion", {"p": (animate_inputs["source"], motion)})
    assert evaluate.main(["--model", str(bundle), "--pairs", str(loaded_folder), "--out", str(tmp_path / "o"),
                          "--quiet"]) == 1
    line = one_error_line(capsys)
    assert "driving.npz holds motion in layout 'synth-v1'" in line and "motion layout is 'facemesh" in line
    assert not (tmp_path / "o").exists()


def test_facemesh_pair_task_has_no_truth_and_a_frames_folder_drives_like_its_video(facemesh_bundle, animate_inputs,
                                                                                   tmp_path):
    """A portrait driven by a video: no truth, the driving frames cut to the model's 32^2 crop;
    the video's frames written as a folder of PNGs give the same motion and crops."""
    from mimaface_jax.face.media_io import read_video, write_image
    from mimaface_jax.inference.bundle import load_model

    bundle, _ = facemesh_bundle
    loaded = load_model(str(bundle), log=lambda _: None)
    frames, _ = read_video(animate_inputs["driving"])
    (tmp_path / "driving").mkdir()
    for i, frame in enumerate(frames):
        write_image(tmp_path / "driving" / f"{i:04d}.png", frame)
    source = str(animate_inputs["source"])
    video = pair_tasks.make_task(pair_tasks.Pair("v", source, str(animate_inputs["driving"])), loaded, 6)
    folder = pair_tasks.make_task(pair_tasks.Pair("f", source, str(tmp_path / "driving")), loaded, 6)
    assert video["truth"] is None and video["driving_missing_frames"] == 0
    assert video["motion"].shape == (6, loaded.layout.size) and video["condition"].shape == (6, 32, 32, 3)
    assert video["driving"].shape == (6, 32, 32, 3) and video["source"].shape == (32, 32, 3)
    np.testing.assert_array_equal(folder["motion"], video["motion"])
    np.testing.assert_array_equal(folder["driving"], video["driving"])
    # relative transfer from the first driving frame: frame 0 keeps the source's pose and expression
    moved = np.setdiff1d(np.arange(loaded.layout.size), loaded.layout.group_indices("gaze"))
    np.testing.assert_allclose(video["motion"][0, moved], video["source_motion"][moved], atol=1e-5)
