"""grain pipeline: documented batch shapes, source outside the clip, flip consistency,
per-process shards, iterator state restored in a new process (with worker processes)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PROC = pathlib.Path(__file__).with_name("pipeline_proc.py")
K_MAX, F = 2, 4
S = K_MAX + F


def dataset_path(builder) -> str:
    return str(builder.data_path)


def config(builder, **kw):
    from mimaface_jax.data.pipeline import DatasetSource, PipelineConfig

    args = dict(sources=(DatasetSource(dataset_path(builder), "train"),), batch_size=3,
                num_frames=F, k_max=K_MAX, seed=3, shard_index=0, shard_count=1)
    args.update(kw)
    return PipelineConfig(**args)


def take(cfg, n):
    from mimaface_jax.data.pipeline import make_iterator

    it = make_iterator(cfg)
    return [next(it) for _ in range(n)]


def run_proc(*args, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, str(PROC), *map(str, args)], cwd=str(REPO),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc, timeout=240):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out.decode(errors="replace")[-4000:]


def test_batch_layout_and_source_outside_clip(video_folder_dataset, kit):
    from mimaface_jax.data.jpeg import decode_jpeg

    cfg = config(video_folder_dataset, flip_prob=0.5)
    batches = take(cfg, 4)
    b = batches[0]
    crop = kit.CROP
    d = 6 + kit.NUM_EXPRESSION + 4
    expected = {"frames": ((3, S, crop, crop, 3), np.uint8),
                "cond": ((3, S, crop, crop, 3), np.uint8),
                "source": ((3, crop, crop, 3), np.uint8),
                "motion": ((3, S, d), np.float32), "source_motion": ((3, d), np.float32),
                "valid": ((3, S), np.bool_), "landmarks": ((3, S, 478, 3), np.float32),
                "dataset_index": ((3,), np.int32), "record_index": ((3,), np.int64),
                "frame_index": ((3, S), np.int32), "source_index": ((3,), np.int32),
                "flipped": ((3,), np.bool_), "skipped_records": ((3,), np.int32),
                "skipped_first": ((3,), np.int64)}
    assert {k: (v.shape, v.dtype) for k, v in b.items()} == expected
    source = video_folder_dataset.as_data_source("train")
    flips = []
    for b in batches:
        for i in range(3):
            window = b["frame_index"][i]
            assert np.array_equal(window, window[0] + np.arange(S))  # consecutive
            assert b["source_index"][i] not in window
            rec = source[int(b["record_index"][i])]
            # the batch holds exactly the record's frames (flipped when the flag says so)
            ref = np.stack([decode_jpeg(rec["frames"][j]) for j in window])
            ref_src = decode_jpeg(rec["frames"][int(b["source_index"][i])])
            if b["flipped"][i]:
                ref, ref_src = ref[:, :, ::-1], ref_src[:, ::-1]
            assert np.array_equal(b["frames"][i], ref)
            assert np.array_equal(b["source"][i], ref_src)
            assert np.isfinite(b["motion"][i]).all()
            # the condition render shows a face where the frame's face is
            face = (b["cond"][i].max(-1) > 0).mean(axis=(1, 2))
            assert np.all((face > 0.05) & (face < 0.8)), face
            flips.append(bool(b["flipped"][i]))
    assert any(flips) and not all(flips)


def test_flip_twice_is_identity_and_mirrors_motion(video_folder_dataset, kit):
    from mimaface_jax.data import augment
    from mimaface_jax.face.expression import ExpressionPCA
    from mimaface_jax.face.motion import MotionExtractor

    rec = video_folder_dataset.as_data_source("train")[0]
    lm, neutral = rec["landmarks"], rec["neutral_shape"]
    crop = kit.CROP
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(augment.flip_images(augment.flip_images(images)), images)
    assert not np.array_equal(augment.flip_images(images), images)
    twice = augment.flip_landmarks(augment.flip_landmarks(lm, crop), crop)
    assert np.abs(twice - lm).max() < 1e-4
    assert np.array_equal(augment.flip_canonical_shape(augment.flip_canonical_shape(neutral)),
                          neutral)

    basis = ExpressionPCA.load(os.path.join(video_folder_dataset.data_dir,
                                            "expression_basis.npz"))
    ex = MotionExtractor(basis, basis.num_components)
    m0 = ex.extract(lm, (crop, crop), neutral_shape=neutral)
    m1 = ex.extract(augment.flip_landmarks(lm, crop), (crop, crop),
                    neutral_shape=augment.flip_canonical_shape(neutral))
    f0, f1 = m0.fields, m1.fields
    assert np.abs(f0["roll"]).max() > 1.0  # the clip has roll to mirror
    # exact up to float rounding: the template and the mirror permutation are symmetric
    assert np.abs(f1["yaw"] + f0["yaw"]).max() < 1e-3
    assert np.abs(f1["roll"] + f0["roll"]).max() < 1e-3
    assert np.abs(f1["pitch"] - f0["pitch"]).max() < 1e-3
    assert np.abs(f1["translation"][:, 0] + f0["translation"][:, 0]).max() < 1e-4
    gaze0, gaze1 = f0["gaze"], f1["gaze"]
    assert np.abs(gaze1[:, [0, 2]] + gaze0[:, [2, 0]]).max() < 1e-4  # x negated, eyes swapped
    assert np.abs(gaze1[:, [1, 3]] - gaze0[:, [3, 1]]).max() < 1e-4
    # closed-form fields of the re-measured motion equal MotionLayout.flip of the original
    layout = m0.layout
    keep = np.concatenate([np.arange(layout.slice(n).start, layout.slice(n).stop)
                           for n in layout.names if n != "expression"])
    flipped = _closed_form_flip(layout, m0.vectors)
    assert np.abs(flipped[:, keep] - m1.vectors[:, keep]).max() < 1e-3


def _closed_form_flip(layout, vectors):
    """MotionLayout.flip refuses the PCA field; flip with that field marked flippable (left
    as is) -- only the closed-form fields are compared."""
    import dataclasses

    from mimaface_jax.face.motion_layout import MotionLayout

    relaxed = MotionLayout(layout.version, tuple(dataclasses.replace(f, flippable=True)
                                                 for f in layout.fields))
    return relaxed.flip(vectors)


def test_pipeline_flip_matches_unflipped_sample(video_folder_dataset, kit):
    """Same seed, flip_prob 0 vs 1: the same window, mirrored images, mirrored motion."""
    a = take(config(video_folder_dataset, flip_prob=0.0), 1)[0]
    b = take(config(video_folder_dataset, flip_prob=1.0), 1)[0]
    assert np.array_equal(a["frame_index"], b["frame_index"]) and b["flipped"].all()
    assert np.array_equal(b["frames"], a["frames"][:, :, :, ::-1])
    assert np.array_equal(b["source"], a["source"][:, :, ::-1])
    yaw = slice(0, 1)
    assert np.abs(b["motion"][..., yaw] + a["motion"][..., yaw]).max() < 1e-3
    assert np.abs(b["landmarks"][..., 0].mean(-1) + a["landmarks"][..., 0].mean(-1)
                  - kit.CROP).max() < 1e-3


def test_shards_in_two_processes_are_disjoint(video_folder_dataset, tmp_path):
    n = len(video_folder_dataset.as_data_source("train"))
    path = dataset_path(video_folder_dataset)
    procs = [run_proc(path, tmp_path / f"shard{i}.npz", "--batches", 100, "--shard", i, 2,
                      "--epochs", 1, "--batch-size", 1) for i in range(2)]
    for p in procs:
        finish(p)
    seen = [np.load(tmp_path / f"shard{i}.npz")["record_index"].tolist() for i in range(2)]
    assert set(seen[0]).isdisjoint(seen[1]), seen
    assert sorted(seen[0] + seen[1]) == list(range((n // 2) * 2))
    assert len(seen[0]) == len(seen[1]) == n // 2


def test_state_restored_in_new_process_continues_the_stream(video_folder_dataset, tmp_path):
    path = dataset_path(video_folder_dataset)
    state = tmp_path / "state.json"
    finish(run_proc(path, tmp_path / "full.npz", "--batches", 5, "--workers", 2,
                    "--save-state-after", 2, state))
    finish(run_proc(path, tmp_path / "resumed.npz", "--batches", 3, "--workers", 2,
                    "--restore-state", state))
    full, resumed = np.load(tmp_path / "full.npz"), np.load(tmp_path / "resumed.npz")
    assert int(full["num_batches"]) == 5 and int(resumed["num_batches"]) == 3
    per = 2  # batch size in pipeline_proc
    for key in ("frames", "cond", "source", "motion", "record_index", "frame_index",
                "source_index", "flipped"):
        assert np.array_equal(resumed[key], full[key][2 * per:]), key
    # and the restored run did not just restart: it differs from the first batches
    assert not np.array_equal(resumed["frame_index"][:per], full["frame_index"][:per]) or \
        not np.array_equal(resumed["record_index"][:per], full["record_index"][:per])


def test_mixture_and_config_errors(video_folder_dataset):
    from mimaface_jax.data.pipeline import DatasetSource, make_iterator

    path = dataset_path(video_folder_dataset)
    cfg = config(video_folder_dataset, batch_size=8,
                 sources=(DatasetSource(path, "train", 3.0), DatasetSource(path, "test", 1.0)))
    b = next(make_iterator(cfg))
    assert set(b["dataset_index"].tolist()) == {0, 1}
    assert (b["dataset_index"] == 0).sum() > (b["dataset_index"] == 1).sum()
    with pytest.raises(ValueError, match="min_clip_frames"):
        make_iterator(config(video_folder_dataset, num_frames=8, k_max=2))
    with pytest.raises(ValueError, match="no split 'validation'"):
        make_iterator(config(video_folder_dataset,
                             sources=(DatasetSource(path, "validation"),)))


def test_stored_motion_source_flips_with_layout(synth_dataset):
    """SynthFaces records: motion and condition come from the records; a flip mirrors the
    images and applies MotionLayout.flip to the motion."""
    from mimaface_jax.data.pipeline import DatasetSource
    from mimaface_jax.data.synth_faces import synth_layout

    src = (DatasetSource(str(synth_dataset.data_path), "train"),)
    a = take(config(synth_dataset, sources=src, flip_prob=0.0), 1)[0]
    b = take(config(synth_dataset, sources=src, flip_prob=1.0), 1)[0]
    assert "landmarks" not in a and a["cond"].shape == (3, S, 32, 32, 3)
    assert np.array_equal(a["frame_index"], b["frame_index"])
    assert np.array_equal(b["frames"], a["frames"][:, :, :, ::-1])
    assert np.array_equal(b["cond"], a["cond"][:, :, :, ::-1])
    np.testing.assert_array_equal(b["motion"], synth_layout().flip(a["motion"]))
    np.testing.assert_array_equal(b["source_motion"], synth_layout().flip(a["source_motion"]))
    records = synth_dataset.as_data_source("train")
    for i in range(3):
        rec = records[int(a["record_index"][i])]
        np.testing.assert_array_equal(a["motion"][i], rec["motion"][a["frame_index"][i]])
        assert a["source_index"][i] not in a["frame_index"][i]


def test_iterator_state_through_orbax_checkpoint_manager(video_folder_dataset, tmp_path):
    """The trainer's way: grain.checkpoint.CheckpointSave/Restore items in an Orbax
    CheckpointManager (one JSON file per process)."""
    import grain
    import orbax.checkpoint as ocp

    from mimaface_jax.data.pipeline import make_iterator

    cfg = config(video_folder_dataset, batch_size=2, render_condition=False)
    it = make_iterator(cfg)
    next(it), next(it)
    manager = ocp.CheckpointManager(str(tmp_path / "ckpt"), options=ocp.CheckpointManagerOptions(
        max_to_keep=2, enable_async_checkpointing=False))
    manager.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
    want = [next(it) for _ in range(2)]
    fresh = make_iterator(cfg)
    manager.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    got = [next(fresh) for _ in range(2)]
    assert (tmp_path / "ckpt" / "2" / "data" / "process_0-of-1.json").exists()
    for w, g in zip(want, got):
        for key in w:
            assert np.array_equal(w[key], g[key]), key


def test_mirror_permutation_agrees_with_mediapipe_connection_sets():
    """The permutation comes from the template's geometry; mediapipe's own left/right sets
    are an independent check."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    from mimaface_jax.data.augment import mirror_permutation

    perm = mirror_permutation()
    assert np.array_equal(perm[perm], np.arange(478))

    def points(edges):
        return {i for e in edges for i in e}

    for left, right in ((fmc.FACEMESH_LEFT_EYE, fmc.FACEMESH_RIGHT_EYE),
                        (fmc.FACEMESH_LEFT_EYEBROW, fmc.FACEMESH_RIGHT_EYEBROW),
                        (fmc.FACEMESH_LEFT_IRIS, fmc.FACEMESH_RIGHT_IRIS)):
        assert {int(perm[i]) for i in points(left)} == points(right)
    for symmetric in (fmc.FACEMESH_LIPS, fmc.FACEMESH_FACE_OVAL):
        assert {int(perm[i]) for i in points(symmetric)} == points(symmetric)
    assert perm[468] == 473 and perm[1] == 1  # iris centres swap, nose tip stays


def test_corrupt_record_is_skipped_counted_and_substituted(synth_dataset, tmp_path):
    """A record that does not parse is passed over: its sample comes from the next record of
    the shard, and the batch says which record was skipped (workers cannot log for the trainer)."""
    from corrupt_records import corrupt_copy
    from mimaface_jax.data.pipeline import DatasetSource

    n = len(synth_dataset.as_data_source("train"))
    path = corrupt_copy(synth_dataset.data_path, tmp_path / "ds", "train", [1])
    cfg = config(synth_dataset, sources=(DatasetSource(str(path), "train"),), batch_size=1, flip_prob=0.0,
                 num_epochs=1, drop_remainder=False)
    batches = take(cfg, n)  # one epoch
    seen = sorted(int(b["record_index"][0]) for b in batches)
    assert 1 not in seen and seen.count(2) == 2 and len(seen) == n
    skipped = [(int(b["skipped_records"][0]), int(b["skipped_first"][0])) for b in batches]
    assert sorted(skipped) == [(0, -1)] * (n - 1) + [(1, 1)]
    # the substitute is an ordinary sample of record 2
    clean = take(config(synth_dataset, batch_size=1, flip_prob=0.0, num_epochs=1, drop_remainder=False), n)
    assert all(b["frames"].shape == clean[0]["frames"].shape for b in batches)


def _copy_dataset(builder, dst, edit_basis=None):
    """A copy of a built FaceMesh dataset's version folder; ``edit_basis(arrays)`` rewrites its
    stored expression basis (the npz's arrays, edited in place)."""
    import shutil

    src = pathlib.Path(dataset_path(builder))
    shutil.copytree(src, dst)
    if edit_basis is not None:
        npz = dst / "expression_basis.npz"
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        edit_basis(arrays)
        np.savez(npz, **arrays)
    return str(dst)


def _flip_first_component(arrays):
    """Another valid basis: the first principal direction with the opposite sign."""
    arrays["components"] = arrays["components"].copy()
    arrays["components"][0] *= -1


def test_facemesh_mixture_needs_one_expression_basis_and_names_it(video_folder_dataset, tmp_path):
    from mimaface_jax.data.encoder_cache import expression_basis_sha256
    from mimaface_jax.data.pipeline import DatasetSource, build_dataset
    from mimaface_jax.face.expression import ExpressionPCA

    a = _copy_dataset(video_folder_dataset, tmp_path / "a")
    b = _copy_dataset(video_folder_dataset, tmp_path / "b")
    c = _copy_dataset(video_folder_dataset, tmp_path / "c", _flip_first_component)
    digest_a = expression_basis_sha256(ExpressionPCA.load(os.path.join(a, "expression_basis.npz")))
    digest_c = expression_basis_sha256(ExpressionPCA.load(os.path.join(c, "expression_basis.npz")))
    assert digest_a != digest_c

    # the same stored basis in both: used, and named (first dataset's file + digest)
    _, sampler = build_dataset(config(video_folder_dataset,
                                      sources=(DatasetSource(a, "train"), DatasetSource(b, "train"))))
    assert os.path.join(a, "expression_basis.npz") in sampler.basis_note
    assert digest_a[:12] in sampler.basis_note
    np.testing.assert_array_equal(sampler.basis.components,
                                  ExpressionPCA.load(os.path.join(b, "expression_basis.npz")).components)

    # different stored bases: refused, naming both datasets and their digests
    with pytest.raises(ValueError, match="must share one expression basis") as err:
        build_dataset(config(video_folder_dataset,
                             sources=(DatasetSource(a, "train"), DatasetSource(c, "train"))))
    message = str(err.value)
    assert a in message and c in message and digest_a[:12] in message and digest_c[:12] in message

    # ... unless the config names the basis to use for all
    chosen = os.path.join(c, "expression_basis.npz")
    _, sampler = build_dataset(config(video_folder_dataset, expression_basis=chosen,
                                      sources=(DatasetSource(a, "train"), DatasetSource(c, "train"))))
    assert chosen in sampler.basis_note and digest_c[:12] in sampler.basis_note
    assert expression_basis_sha256(sampler.basis) == digest_c
