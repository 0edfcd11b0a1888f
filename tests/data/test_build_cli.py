"""`python -m data_pipelines.build`: presets, --set overrides, Beam, and its errors."""

from pathlib import Path

import pytest
from array_record.python.array_record_module import ArrayRecordReader

from data_pipelines.build import main

TINY = ["--set", "train_identities=2", "--set", "validation_identities=1", "--set",
        "test_identities=1", "--set", "videos_per_identity=2", "--set", "num_frames=12",
        "--config_name", "tiny"]


def _records(folder: Path) -> dict[str, list[bytes]]:
    out = {}
    for split in ("train", "validation", "test"):
        files = sorted(folder.glob(f"synth_faces-{split}.array_record-*"))
        assert files, f"no {split} records in {folder}"
        data = []
        for f in files:
            reader = ArrayRecordReader(str(f))
            data += [reader.read() for _ in range(reader.num_records())]
            reader.close()
        out[split] = sorted(data)
    return out


def test_synth_faces_builds_the_same_records_in_process_and_on_beam(tmp_path, capsys):
    assert main(["synth_faces", "--data_dir", str(tmp_path / "plain"), *TINY]) == 0
    assert main(["synth_faces", "--data_dir", str(tmp_path / "beam"), *TINY,
                 "--beam_pipeline_options=--runner=DirectRunner"]) == 0
    plain = _records(tmp_path / "plain" / "synth_faces" / "tiny" / "1.0.0")
    beam = _records(tmp_path / "beam" / "synth_faces" / "tiny" / "1.0.0")
    assert [len(plain[s]) for s in ("train", "validation", "test")] == [4, 2, 2]
    assert plain == beam
    assert "built synth_faces" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["celeb_df"], "unknown dataset 'celeb_df'"),
    (["synth_faces/res32"], "no config 'res32'"),
    (["synth_faces", "--set", "train_identities=2"], "needs a new --config_name"),
    (["synth_faces", "--set", "identities=2", "--config_name", "x"], "not a field"),
    (["synth_faces", "--set", "symmetric=maybe", "--config_name", "x"], "expected true or false"),
    (["synth_faces", "--config_name", "x"], "give --set"),
    (["voxceleb2"], "pass --manual_dir"),
])
def test_bad_requests_fail_with_a_specific_message(tmp_path, capsys, argv, message):
    assert main([*argv, "--data_dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
