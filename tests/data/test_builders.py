"""TFDS builders: video_folder on real-face videos with bad files; voxceleb2 / hdtf / celebv_hq
naming conventions; identity-disjoint splits; the expression basis post-pass."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest



def read_split(builder, split: str) -> list[dict]:
    source = builder.as_data_source(split)
    return [source[i] for i in range(len(source))]


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def all_records(builder) -> dict[str, list[dict]]:
    return {split: read_split(builder, split) for split in builder.info.splits.keys()}


def test_split_assignment_is_deterministic_and_follows_fractions():
    from data_pipelines.common.splits import assign_split

    fractions = (("train", 0.8), ("validation", 0.1), ("test", 0.1))
    names = [f"id{i:05d}" for i in range(4000)]
    first = [assign_split(n, fractions) for n in names]
    assert first == [assign_split(n, fractions) for n in names]
    share = {s: first.count(s) / len(names) for s in ("train", "validation", "test")}
    assert abs(share["train"] - 0.8) < 0.03 and abs(share["test"] - 0.1) < 0.02, share
    with pytest.raises(ValueError, match="sum to 1"):
        assign_split("x", (("train", 0.5), ("test", 0.4)))


def test_video_folder_records_and_skip_counts(video_folder_dataset, video_folder_layout, kit):
    from mimaface_jax.data import records
    from mimaface_jax.data.jpeg import decode_jpeg
    from mimaface_jax.face import align
    from mimaface_jax.face.landmarks import five_keypoints
    from mimaface_jax.face.motion_layout import MotionLayout, facemesh_layout

    CROP, CLIP_LENGTH, NUM_EXPRESSION = kit.CROP, kit.CLIP_LENGTH, kit.NUM_EXPRESSION
    builder = video_folder_dataset
    meta = dict(builder.info.metadata)
    # the corrupt file and the faceless video are counted, the build went on
    assert meta[records.META_SKIPPED] == {"no_face": 1, "undecodable": 1}
    assert any("broken.mp4" in p for p in meta[records.META_SKIPPED_FILES]["undecodable"])
    assert any("empty_room.mp4" in p for p in meta[records.META_SKIPPED_FILES]["no_face"])
    assert meta[records.META_VIDEOS] == {"seen": 5, "used": 3}
    layout = MotionLayout.from_json(meta[records.META_LAYOUT])
    assert layout == facemesh_layout(NUM_EXPRESSION)

    recs = all_records(builder)
    clips_per_video = kit.VIDEO_FRAMES // CLIP_LENGTH
    assert sum(len(v) for v in recs.values()) == 3 * clips_per_video
    template = align.crop_template(CROP)
    for split, rows in recs.items():
        for r in rows:
            t = int(r["num_frames"])
            assert t == CLIP_LENGTH and len(r["frames"]) == t
            frame = decode_jpeg(r["frames"][0])
            assert frame.shape == (CROP, CROP, 3) and frame.dtype == np.uint8
            assert r["landmarks"].shape == (t, 478, 3) and r["motion"].shape == (t, layout.size)
            assert r["face_found"].all()
            # one transform per clip: the crop does not move inside a clip
            assert np.abs(r["crop_transform"] - r["crop_transform"][:1]).max() == 0
            # the clip-mean keypoints are aligned to the crop template: their best
            # similarity onto the template is the identity
            mean_kp = np.mean([five_keypoints(lm) for lm in r["landmarks"]], axis=0)
            fit = align.umeyama_similarity(mean_kp, template)
            assert np.abs(fit[:, :2] - np.eye(2)).max() < 0.01, fit
            assert np.abs(fit[:, 2]).max() < 0.3, fit
            # expression is filled at read time; pose and gaze are measured
            assert np.all(r["motion"][:, layout.slice("expression")] == 0)
            assert np.isfinite(r["motion"]).all()

    # measured roll follows the known roll of the warp (up to a per-clip constant)
    errors = []
    for rows in recs.values():
        for r in rows:
            motion = video_folder_layout["motions"][text(r["video_id"])]
            start = int(r["start_frame"])
            known = motion.roll[start:start + CLIP_LENGTH]
            measured = r["motion"][:, layout.slice("roll")][:, 0]
            errors.append(np.abs((measured - measured.mean()) - (known - known.mean())).max())
    assert max(errors) < 1.2, errors

    # expression basis fitted on train, stored beside the data
    from mimaface_jax.face.expression import ExpressionPCA

    basis = ExpressionPCA.load(os.path.join(builder.data_dir, meta[records.META_EXPRESSION_BASIS]))
    assert basis.num_components == NUM_EXPRESSION
    # speaker ids come from the sub-folders; splits are identity-disjoint
    speakers = {s: {text(r["speaker_id"]) for r in rows} for s, rows in recs.items()}
    assert speakers["train"] == set(video_folder_layout["speakers"]["train"])
    assert speakers["test"] == set(video_folder_layout["speakers"]["test"])
    assert meta[records.META_CLIPS] == {"train": 2 * clips_per_video, "test": clips_per_video}


def _copy(src: str, dst) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy(src, dst)


def _assert_disjoint(recs: dict[str, list[dict]]) -> dict[str, set]:
    speakers = {s: {text(r["speaker_id"]) for r in rows} for s, rows in recs.items()}
    names = list(speakers)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not speakers[a] & speakers[b], (a, b, speakers)
    return speakers


def test_voxceleb2_manual_dir(tmp_path, face_videos, kit):
    from data_pipelines.voxceleb2 import Voxceleb2

    ids = kit.pick_speakers([f"id{i:05d}" for i in range(10, 60)], {"train": 1, "test": 1})
    train_id, test_id = ids["train"][0], ids["test"][0]
    manual = tmp_path / "vox"
    _copy(face_videos["good"][0], manual / "dev/mp4" / train_id / "5r0dWxy17C8/00001.mp4")
    _copy(face_videos["good"][1], manual / "dev/mp4" / train_id / "9ZgGVfLOfYs/00002.mp4")
    _copy(face_videos["good"][2], manual / "test/mp4" / test_id / "aBcDeFgHiJk/00003.mp4")
    _copy(face_videos["good"][2], manual / "dev/mp4/stray_video.mp4")
    (manual / "dev/mp4" / train_id / "5r0dWxy17C8/00001.m4a").write_bytes(b"audio")
    builder = kit.build(Voxceleb2, manual, tmp_path / "data")
    recs = all_records(builder)
    speakers = _assert_disjoint(recs)
    assert speakers == {"train": {train_id}, "test": {test_id}}
    videos = {text(r["video_id"]) for rows in recs.values() for r in rows}
    assert videos == {f"{train_id}/5r0dWxy17C8/00001", f"{train_id}/9ZgGVfLOfYs/00002",
                      f"{test_id}/aBcDeFgHiJk/00003"}
    meta = dict(builder.info.metadata)
    assert meta["skipped"] == {"unrecognised_name": 1}  # stray_video.mp4; the .m4a is ignored
    clip_ids = {text(r["clip_id"]) for rows in recs.values() for r in rows}
    assert f"{test_id}/aBcDeFgHiJk/00003/clip0001" in clip_ids


def test_hdtf_manual_dir(tmp_path, face_videos, kit):
    from data_pipelines.hdtf import Hdtf
    from data_pipelines.hdtf.hdtf import parse_hdtf_name

    assert parse_hdtf_name("WDA_BarackObama_000") == ("WDA_BarackObama", "000")
    assert parse_hdtf_name("RD_Radio1_012") == ("RD_Radio1", "012")
    assert parse_hdtf_name("no_index") is None
    names = kit.pick_speakers([f"WDA_Person{i}" for i in range(40)] + [f"RD_Radio{i}" for i in
                          range(40)], {"train": 1, "test": 1})
    train_s, test_s = names["train"][0], names["test"][0]
    manual = tmp_path / "hdtf"
    _copy(face_videos["good"][0], manual / "HDTF" / f"{train_s}_000.mp4")
    _copy(face_videos["good"][1], manual / "HDTF" / f"{train_s}_001.mp4")
    _copy(face_videos["good"][2], manual / "HDTF" / f"{test_s}_000.mp4")
    _copy(face_videos["good"][2], manual / "HDTF" / "README_clip.mp4")
    builder = kit.build(Hdtf, manual, tmp_path / "data")
    recs = all_records(builder)
    speakers = _assert_disjoint(recs)
    assert speakers == {"train": {train_s}, "test": {test_s}}
    assert {text(r["video_id"]) for r in recs["train"]} == {f"{train_s}_000", f"{train_s}_001"}
    assert dict(builder.info.metadata)["skipped"] == {"unrecognised_name": 1}


def test_celebv_hq_manual_dir(tmp_path, face_videos, kit):
    from data_pipelines.celebv_hq import CelebvHq

    ytb = kit.pick_speakers([f"yt{i:03d}XyZ" for i in range(60)], {"train": 1, "test": 1})
    train_y, test_y = ytb["train"][0], ytb["test"][0]
    clips = {f"{train_y}_0": train_y, f"{train_y}_1": train_y, f"{test_y}_0": test_y,
             "annotated_but_absent_3": test_y}
    info = {"meta_info": {"appearance_mapping": [], "action_mapping": []},
            "clips": {cid: {"ytb_id": y, "duration": {"start_sec": 1.0, "end_sec": 2.0},
                            "bbox": {"top": 0.1, "bottom": 0.9, "left": 0.2, "right": 0.8},
                            "attributes": {"appearance": [0] * 40, "action": [0] * 35,
                                           "emotion": {"sep_flag": False, "labels": "neutral"}},
                            "version": "v0.1"} for cid, y in clips.items()}}
    manual = tmp_path / "celebv"
    manual.mkdir()
    (manual / "celebvhq_info.json").write_text(json.dumps(info))
    _copy(face_videos["good"][0], manual / "35666" / f"{train_y}_0.mp4")
    _copy(face_videos["good"][1], manual / "35666" / f"{train_y}_1.mp4")
    _copy(face_videos["good"][2], manual / "35666" / f"{test_y}_0.mp4")
    _copy(face_videos["good"][2], manual / "35666" / "unlisted_clip.mp4")
    builder = kit.build(CelebvHq, manual, tmp_path / "data")
    recs = all_records(builder)
    speakers = _assert_disjoint(recs)
    assert speakers == {"train": {train_y}, "test": {test_y}}
    assert {text(r["video_id"]) for r in recs["test"]} == {f"{test_y}_0"}
    assert dict(builder.info.metadata)["skipped"] == {"missing_file": 1,
                                                      "not_in_annotations": 1}


def test_celebv_hq_malformed_annotations(tmp_path):
    from data_pipelines.celebv_hq.celebv_hq import read_clip_speakers

    path = tmp_path / "celebvhq_info.json"
    path.write_text(json.dumps({"clips": {"abc_0": {"duration": {}}}}))
    with pytest.raises(ValueError, match=r"clips\['abc_0'\] has no string 'ytb_id'"):
        read_clip_speakers(str(path))


def test_synth_faces_builder_stores_the_generator_output(synth_dataset):
    from mimaface_jax.data import records
    from mimaface_jax.data.jpeg import decode_jpeg, encode_jpeg
    from mimaface_jax.data.synth_faces import SynthFaces
    from mimaface_jax.face.motion_layout import MotionLayout

    builder = synth_dataset
    meta = dict(builder.info.metadata)
    assert meta[records.META_FORMAT] == records.STORED_MOTION_FORMAT
    layout = MotionLayout.from_json(meta[records.META_LAYOUT])
    gen = SynthFaces(builder.builder_config.generator_config())
    recs = all_records(builder)
    assert meta[records.META_CLIPS] == {"train": 4, "test": 2}
    speakers = _assert_disjoint(recs)
    assert speakers == {"train": {"id0000000", "id0000001"}, "test": {"id2000000"}}
    for split, rows in recs.items():
        for r in rows:
            identity = int(text(r["speaker_id"])[2:])
            video = gen.generate_video(identity, 0, split)
            start = int(r["start_frame"])
            window = slice(start, start + 8)
            np.testing.assert_array_equal(r["motion"], video["motion"][window])
            assert r["motion"].shape == (8, layout.size)
            np.testing.assert_array_equal(r["identity_code"], video["identity_code"])
            # the stored JPEGs are the generator's frames / condition renders
            assert list(r["frames"]) == [encode_jpeg(f, 95) for f in video["frames"][window]]
            assert list(r["condition"]) == [encode_jpeg(f, 95)
                                            for f in video["condition"][window]]
            assert decode_jpeg(r["frames"][0]).shape == (32, 32, 3)


def _load_face_onnx_models():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "face" / "onnx_models.py"
    spec = importlib.util.spec_from_file_location("data_test_onnx_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_identity_embeddings_with_an_arcface_model(tmp_path, video_folder_layout, kit):
    from data_pipelines.video_folder import VideoFolder
    from mimaface_jax.data.pipeline import DatasetSource, make_iterator
    from mimaface_jax.face import align, media_io
    from mimaface_jax.face.identity import ArcFaceEmbedder

    model = _load_face_onnx_models().tiny_arcface(str(tmp_path / "arcface.onnx"))
    builder = kit.build(VideoFolder, video_folder_layout["root"], tmp_path / "data",
                        arcface_model=model, identity_frames=3)
    assert dict(builder.info.metadata)["has_identity"] is True
    rec = builder.as_data_source("train")[0]
    assert rec["identity"].shape == (512,)
    assert abs(np.linalg.norm(rec["identity"]) - 1) < 1e-5
    # recompute: ArcFace crops of 3 evenly spaced ORIGINAL frames of the clip
    frames, _ = media_io.read_video(os.path.join(video_folder_layout["root"],
                                                 text(rec["video_id"]) + ".mp4"))
    inv = align.invert_transform(rec["crop_transform"][0])
    start, t = int(rec["start_frame"]), int(rec["num_frames"])
    scale = np.sqrt(abs(np.linalg.det(rec["crop_transform"][0][:, :2])))
    crops = []
    for j in np.linspace(0, t - 1, 3).round().astype(int):
        lm = rec["landmarks"][j].astype(np.float64)
        image_lm = np.concatenate([align.apply_transform(inv, lm), lm[:, 2:] / scale], 1)
        crops.append(align.arcface_crop(frames[start + j], image_lm))
    emb = ArcFaceEmbedder(model).embed(np.stack(crops)).mean(0)
    emb /= np.linalg.norm(emb)
    assert float(emb @ rec["identity"]) > 0.999
    cfg_sources = (DatasetSource(str(builder.data_path), "train"),)
    from mimaface_jax.data.pipeline import PipelineConfig

    batch = next(make_iterator(PipelineConfig(sources=cfg_sources, batch_size=2, num_frames=4,
                                              k_max=2, render_condition=False, shard_index=0,
                                              shard_count=1)))
    assert batch["identity"].shape == (2, 512) and batch["identity"].dtype == np.float32
    assert "cond" not in batch


def test_clip_bounds_and_interpolation():
    from data_pipelines.common.preprocess import clip_bounds, interpolate_missing

    assert clip_bounds(25, 10, 4) == [(0, 10), (10, 20), (20, 25)]
    assert clip_bounds(23, 10, 4) == [(0, 10), (10, 20)]  # 3-frame tail dropped
    assert clip_bounds(25, 10, 4, max_clips=1) == [(0, 10)]
    lm = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 478, 3), np.float32)
    found = np.array([True, False, False, True, False])
    lm[~found] = np.nan
    out = interpolate_missing(lm, found)
    np.testing.assert_allclose(out[:, 0, 0], [0, 1, 2, 3, 3])  # linear inside, held at ends


def test_split_with_only_bad_videos_fails_with_the_skip_counts(tmp_path, face_videos, kit):
    from data_pipelines.video_folder import VideoFolder

    manual = tmp_path / "manual"
    _copy(face_videos["corrupt"], manual / "solo" / "broken.mp4")
    with pytest.raises(RuntimeError, match=r"every video of a split was skipped.*undecodable"):
        kit.build(VideoFolder, manual, tmp_path / "data",
                  split_fractions=(("train", 1.0),))


def test_smooth_crop_mode_follows_the_face(face_videos, kit):
    from data_pipelines.common.preprocess import (PreprocessConfig, Skip, VideoItem,
                                                  VideoProcessor)
    from mimaface_jax.face import align
    from mimaface_jax.face.landmarks import five_keypoints

    processor = VideoProcessor(PreprocessConfig(crop_size=kit.CROP, clip_length=20,
                                                min_clip_frames=8, crop_mode="smooth",
                                                smooth_window=5, num_expression=4))
    try:
        outs = list(processor.process(VideoItem(face_videos["good"][0], "a", "a")))
    finally:
        processor.close()
    assert not any(isinstance(o, Skip) for o in outs) and len(outs) == 1
    ex = outs[0][1]
    angles = np.degrees(np.arctan2(ex["crop_transform"][:, 1, 0], ex["crop_transform"][:, 0, 0]))
    assert np.ptp(angles) > 5.0  # the crop turns with the face (roll amplitude >= 5 degrees)
    template = align.crop_template(kit.CROP)
    residual = [np.abs(five_keypoints(lm) - template).max() for lm in ex["landmarks"]]
    roll = ex["motion"][:, 2]
    assert np.ptp(roll) < 2.0, roll  # the face barely rotates inside a following crop
    assert max(residual) < 4.0, residual
