"""metrics.ablation_table: evaluate outputs side by side in docs/RESULTS.md's marked block."""

from __future__ import annotations

import json

import pytest

from mimaface_jax.metrics import ablation_table as at

SETTINGS = {"data": "/d/synth_faces/demo64/1.0.0", "split": "validation", "task_kind": "cross",
            "num_videos": 2, "frames": 12}


def _run(tmp_path, name, mean, **settings):
    folder = tmp_path / name
    folder.mkdir()
    doc = {"settings": dict(SETTINGS, ablation=settings.pop("ablation", ""), **settings), "mean": mean,
           "samples": [], "skipped": {"lpips": "no weights"}}
    (folder / "metrics.json").write_text(json.dumps(doc))
    return f"{name}={folder}"


FULL = {"psnr_motion_mask": 18.5, "psnr_motion_mask_copy_source": 15.25, "ssim": 0.75, "ssim_copy_source": 0.5,
        "interclip_discontinuity": 1.25, "interclip_discontinuity_ground_truth": 1.0}


def test_table_rows_and_baselines(tmp_path):
    runs = at.load_runs([_run(tmp_path, "full", FULL),
                         _run(tmp_path, "no_ica", dict(FULL, interclip_discontinuity=2.5), ablation="ica=off")])
    text = at.markdown(runs, "bash scripts/ablate.sh", elapsed=600)
    rows = [line for line in text.splitlines() if line.startswith("| full") or line.startswith("| no_ica")]
    assert rows[0].startswith("| full | none | 18.50 (15.25 copy) | 0.7500 (0.5000 copy) | 1.2500 (1.0000 ground truth)")
    assert rows[1].startswith("| no_ica | ica=off | 18.50 (15.25 copy) | 0.7500 (0.5000 copy) | 2.5000 ")
    assert "`bash scripts/ablate.sh` (10.0 min in all)" in text and "- lpips: no weights" in text


def test_metric_missing_in_one_run_is_left_out(tmp_path):
    partial = {k: v for k, v in FULL.items() if not k.startswith("ssim")}
    text = at.markdown(at.load_runs([_run(tmp_path, "a", FULL), _run(tmp_path, "b", partial)]), "c", None)
    assert "psnr_motion_mask" in text and "| ssim" not in text


def test_runs_over_different_data_are_refused(tmp_path):
    with pytest.raises(at.AblationTableError, match="'b' evaluated frames=8 but 'a' 12: not comparable"):
        at.load_runs([_run(tmp_path, "a", FULL), _run(tmp_path, "b", FULL, frames=8)])
    with pytest.raises(at.AblationTableError, match="expected LABEL=EVAL_DIR"):
        at.load_runs(["no_equals_sign"])
    with pytest.raises(at.AblationTableError, match="missing/metrics.json does not exist"):
        at.load_runs([f"x={tmp_path / 'missing'}"])


def test_main_replaces_only_the_marked_block(tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    run = _run(tmp_path, "full", FULL)
    assert at.main([run, "--out", str(out), "--command", "first"]) == 0
    out.write_text("# Results\n\nintro\n\n" + out.read_text() + "\nreading of the numbers\n")
    assert at.main([run, "--out", str(out), "--command", "second"]) == 0
    text = out.read_text()
    assert text.startswith("# Results\n\nintro\n\n") and text.endswith("reading of the numbers\n")
    assert "`second`" in text and "`first`" not in text and text.count(at.BEGIN) == 1
    assert at.main([f"x={tmp_path / 'nope'}", "--out", str(out), "--command", "c"]) == 1
    assert out.read_text() == text
    assert "ablation_table: error:" in capsys.readouterr().err
