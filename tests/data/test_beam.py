"""The ``video_folder`` builder through Apache Beam's DirectRunner gives the same records as the
in-process build, and the same skip counts (from Beam counters). Needs apache-beam."""

from __future__ import annotations

import numpy as np


def _by_clip(builder) -> dict[str, dict]:
    out = {}
    for split in builder.info.splits.keys():
        source = builder.as_data_source(split)
        for i in range(len(source)):
            rec = source[i]
            out[(split, rec["clip_id"])] = rec
    return out


def test_beam_direct_runner_matches_in_process_build(tmp_path, video_folder_layout,
                                                     video_folder_dataset, kit):
    import apache_beam as beam

    from data_pipelines.video_folder import VideoFolder

    beam_builder = kit.build(VideoFolder, video_folder_layout["root"], tmp_path / "beam",
                             beam_runner=beam.runners.DirectRunner())
    ref, got = _by_clip(video_folder_dataset), _by_clip(beam_builder)
    assert sorted(got) == sorted(ref) and len(got) == 6
    for key, r in ref.items():
        g = got[key]
        assert list(g["frames"]) == list(r["frames"]), key  # identical JPEG bytes
        for name in ("landmarks", "motion", "neutral_shape", "crop_transform", "face_found"):
            np.testing.assert_array_equal(g[name], r[name], err_msg=f"{key} {name}")
        assert g["speaker_id"] == r["speaker_id"] and g["start_frame"] == r["start_frame"]
    meta = dict(beam_builder.info.metadata)
    assert meta["skipped"] == {"no_face": 1, "undecodable": 1}
    assert meta["videos"] == {"seen": 5, "used": 3}
    assert meta["skipped_files"] == {}  # Beam reports counters only: the Beam path ran
    ref_meta = dict(video_folder_dataset.info.metadata)
    assert meta["clips"] == ref_meta["clips"]
