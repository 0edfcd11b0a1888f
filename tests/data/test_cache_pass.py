"""Encoder cache pass (data_pipelines/common/cache_pass.py) and the pipeline's use_cache path:
cached moments / CLIP tokens equal a direct encode of the record frames, the cached batch holds
the encodings of exactly the frames the pixel pipeline picks, existing caches are never
overwritten, and a cache is refused for any dataset other than its own."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

K_MAX, F = 2, 4
S = K_MAX + F
VAE_CONFIG = dict(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
                  norm_num_groups=4)
CLIP_CONFIG = dict(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=2,
                   num_attention_heads=2, intermediate_size=32)


def _random_params(factory, seed: int):
    """Abstract build + numpy random weights (fast: no per-shape init compilation)."""
    graphdef, abstract, _ = nnx.split(nnx.eval_shape(factory), nnx.Param, ...)
    rng = np.random.default_rng(seed)

    def fill(x):
        if len(x.shape) >= 2:
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(x.shape[:-1])), x.shape)
        else:
            value = 1.0 + rng.normal(0.0, 0.1, x.shape)
        return jnp.asarray(value.astype(x.dtype))

    return graphdef, jax.tree.map(fill, abstract)


@dataclasses.dataclass
class TinyEncoders:
    path: str
    vae: object
    clip: object
    clip_size: int

    def moments(self, frames_uint8: np.ndarray) -> np.ndarray:
        """Direct encode, no batching / padding: (N, H, W, 3) uint8 -> (N, h, w, 2C)."""
        x = jnp.asarray(frames_uint8.astype(np.float32) / 127.5 - 1.0)
        mean, logvar = self.vae.encode(x)
        return np.concatenate([np.asarray(mean), np.asarray(logvar)], -1)

    def tokens(self, frames_uint8: np.ndarray) -> np.ndarray:
        from mimaface_jax.models.clip_preprocess import clip_preprocess

        pixels = clip_preprocess(frames_uint8, size=self.clip_size, crop=self.clip_size)
        return np.asarray(self.clip(jnp.asarray(pixels)))


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> TinyEncoders:
    from mimaface_jax.importers.pretrained_store import write_pretrained
    from mimaface_jax.models.clip_vision import CLIPVisionConfig, CLIPVisionModel
    from mimaface_jax.models.vae import AutoencoderKL, VAEConfig

    vae_config, clip_config = VAEConfig(**VAE_CONFIG), CLIPVisionConfig(**CLIP_CONFIG)
    vae_graph, vae_state = _random_params(lambda: AutoencoderKL(vae_config, rngs=nnx.Rngs(0)), 0)
    clip_graph, clip_state = _random_params(
        lambda: CLIPVisionModel(clip_config, rngs=nnx.Rngs(0)), 1)
    path = str(tmp_path_factory.mktemp("pretrained") / "ckpt")
    write_pretrained(path, {"vae": vae_state, "clip": clip_state},
                     {"configs": {"vae": dataclasses.asdict(vae_config),
                                  "clip": dataclasses.asdict(clip_config)}})
    return TinyEncoders(path, nnx.merge(vae_graph, vae_state), nnx.merge(clip_graph, clip_state),
                        clip_config.image_size)


def _build_synth(data_dir, seed: int):
    import tensorflow_datasets as tfds

    from data_pipelines.synth_faces.builder import SynthFacesBuilder, SynthFacesBuilderConfig

    config = SynthFacesBuilderConfig(name="cache32", resolution=32, num_frames=16, seed=seed,
                                     train_identities=2, validation_identities=0,
                                     test_identities=1, videos_per_identity=1, clip_length=8)
    builder = SynthFacesBuilder(config=config, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
    return builder


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Two tiny SynthFaces datasets of the same shape (4 train clips of 8 frames, 32x32) that
    differ only in their seed, built for this module (caches are written beside them)."""
    root = tmp_path_factory.mktemp("cache_synth")
    return {"own": _build_synth(root / "own", 0), "other": _build_synth(root / "other", 1),
            "data_dir": str(root / "own")}


@pytest.fixture(scope="module")
def fp32_cache(synth, encoders, tmp_path_factory):
    from data_pipelines.common.cache_pass import CachePassConfig, run_cache_pass

    out = str(tmp_path_factory.mktemp("caches") / "fp32")
    # batch 6 does not divide the 2 x 8 VAE rows or the 8 CLIP rows of a record: batches
    # straddle records and the last one is padded
    config = CachePassConfig(batch=6, moments_dtype="float32", tokens_dtype="float32",
                             records_per_shard=3)
    return run_cache_pass(str(synth["own"].data_path), "train", encoders.path, out=out,
                          config=config, log=lambda _: None)


def _pipeline_config(builder, **kw):
    from mimaface_jax.data.pipeline import DatasetSource, PipelineConfig

    cache = kw.pop("cache", None)
    args = dict(sources=(DatasetSource(str(builder.data_path), "train", cache=cache),),
                batch_size=2, num_frames=F, k_max=K_MAX, seed=5, shard_index=0, shard_count=1,
                flip_prob=0.0)
    args.update(kw)
    return PipelineConfig(**args)


def _take(config, n):
    from mimaface_jax.data.pipeline import make_iterator

    it = make_iterator(config)
    return [next(it) for _ in range(n)]


def _record_pixels(rec):
    from mimaface_jax.data.jpeg import decode_jpeg

    return (np.stack([decode_jpeg(b) for b in rec["frames"]]),
            np.stack([decode_jpeg(b) for b in rec["condition"]]))


def _err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| in units of max(1, max |want|): float32 results of differently shaped
    batches differ by a few ulps of the largest value (moments here reach ~7)."""
    return float(np.abs(got.astype(np.float32) - want).max() / max(1.0, np.abs(want).max()))


def _tree_digest(folder: str) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), folder)] = \
                    hashlib.sha256(f.read()).hexdigest()
    return out


def test_fp32_cache_equals_direct_encode_of_record_frames(synth, encoders, fp32_cache):
    from mimaface_jax.data import encoder_cache

    data = synth["own"].as_data_source("train")
    cache = encoder_cache.open_cache(fp32_cache, str(synth["own"].data_path), "train", len(data))
    assert [len(v) for v in cache.info["files"].values()] == [2, 2]
    assert cache.info["condition"] is True
    assert cache.info["pretrained"]["path"] == os.path.abspath(encoders.path)
    worst = {"moments": 0.0, "cond": 0.0, "tokens": 0.0}
    for i in range(len(data)):
        rec = data[i]
        frames, cond = _record_pixels(rec)
        got = cache.read(i, rec, "test")
        assert got["moments"].dtype == np.float32 and got["clip_tokens"].dtype == np.float32
        assert got["moments"].shape == (8, 16, 16, 8) and got["clip_tokens"].shape == (8, 5, 16)
        worst["moments"] = max(worst["moments"], _err(got["moments"], encoders.moments(frames)))
        worst["cond"] = max(worst["cond"], _err(got["cond_moments"], encoders.moments(cond)))
        worst["tokens"] = max(worst["tokens"], _err(got["clip_tokens"], encoders.tokens(frames)))
    print("fp32 cache max |diff| / max(1, scale):", worst)
    assert max(worst.values()) <= 1e-5, worst


def test_fp16_cache_via_cli_is_the_rounded_encoding(synth, encoders):
    from data_pipelines.cache_pass import main
    from mimaface_jax.data import encoder_cache

    path = str(synth["own"].data_path)
    assert main(["--data_dir", synth["data_dir"], "--dataset", "synth_faces/cache32",
                 "--split", "train", "--pretrained", encoders.path, "--batch", "16"]) == 0
    data = synth["own"].as_data_source("train")
    cache = encoder_cache.open_cache(encoder_cache.default_cache_dir(path, "train"), path,
                                     "train", len(data))
    assert cache.info["moments_dtype"] == "float16" and cache.info["tokens_dtype"] == "float16"
    worst = 0.0
    for i in range(len(data)):
        rec = data[i]
        frames, cond = _record_pixels(rec)
        got = cache.read(i, rec, "test")
        for key, direct in (("moments", encoders.moments(frames)),
                            ("cond_moments", encoders.moments(cond)),
                            ("clip_tokens", encoders.tokens(frames))):
            assert got[key].dtype == np.float16
            # float16 keeps 11 significant bits: rounding error <= 2^-11 relative
            err = np.abs(got[key].astype(np.float32) - direct)
            assert (err <= np.abs(direct) * 2.0 ** -11 + 1e-5).all(), (key, err.max())
            worst = max(worst, float((err / (np.abs(direct) + 1e-3)).max()))
    print("fp16 cache max relative |diff|:", worst)


def test_cached_batches_hold_the_encodings_of_the_pixel_pipelines_frames(synth, encoders,
                                                                          fp32_cache):
    plain = _take(_pipeline_config(synth["own"]), 3)
    cached = _take(_pipeline_config(synth["own"], use_cache=True, cache=fp32_cache), 3)
    both = _take(_pipeline_config(synth["own"], use_cache=True, cache_pixels=True,
                                  cache=fp32_cache), 3)
    worst = 0.0
    for a, b, c in zip(plain, cached, both):
        for key in ("record_index", "frame_index", "source_index", "motion", "source_motion"):
            assert np.array_equal(a[key], b[key]) and np.array_equal(a[key], c[key]), key
        assert not {"frames", "cond", "source"} & set(b)
        assert b["latent_moments"].shape == (2, S, 16, 16, 8)
        assert b["source_clip_tokens"].shape == (2, 5, 16)
        for key in ("frames", "cond", "source"):
            assert np.array_equal(a[key], c[key]), key
        for i in range(2):
            diffs = (_err(b["latent_moments"][i], encoders.moments(a["frames"][i])),
                     _err(b["cond_moments"][i], encoders.moments(a["cond"][i])),
                     _err(b["source_clip_tokens"][i], encoders.tokens(a["source"][i][None])[0]))
            worst = max(worst, *diffs)
    print("cached batch vs encode of the pixel batch, max |diff| / max(1, scale):", worst)
    assert worst <= 1e-5


def test_cache_refuses_flip_and_other_resolution(synth, fp32_cache):
    from mimaface_jax.data.encoder_cache import CacheMismatchError

    with pytest.raises(ValueError, match="flip_prob=0"):
        _pipeline_config(synth["own"], use_cache=True, cache=fp32_cache, flip_prob=0.5)
    with pytest.raises(CacheMismatchError, match="resolution 32.*yields 16"):
        _take(_pipeline_config(synth["own"], use_cache=True, cache=fp32_cache, resolution=16), 1)


def test_second_pass_into_the_same_place_is_refused_and_the_first_is_intact(synth, encoders,
                                                                           fp32_cache):
    from data_pipelines.common.cache_pass import CachePassConfig, run_cache_pass
    from mimaface_jax.data.encoder_cache import EncoderCacheError

    before = _tree_digest(fp32_cache)
    with pytest.raises(EncoderCacheError, match="already exists"):
        run_cache_pass(str(synth["own"].data_path), "train", encoders.path, out=fp32_cache,
                       config=CachePassConfig(moments_dtype="float32"), log=lambda _: None)
    assert _tree_digest(fp32_cache) == before and len(before) == 5  # info + 2 x 2 shards
    assert sorted(os.listdir(os.path.dirname(fp32_cache))) == ["fp32"]  # no temp folder left
    # and the cache still reads
    assert len(_take(_pipeline_config(synth["own"], use_cache=True, cache=fp32_cache), 1)) == 1


def test_cache_of_another_dataset_or_split_is_refused(synth, fp32_cache):
    from mimaface_jax.data import encoder_cache

    other = synth["other"]
    assert len(other.as_data_source("train")) == len(synth["own"].as_data_source("train"))
    with pytest.raises(encoder_cache.CacheMismatchError, match="fingerprint"):
        _take(_pipeline_config(other, use_cache=True, cache=fp32_cache), 1)
    with pytest.raises(encoder_cache.CacheMismatchError, match="split 'train', not 'test'"):
        encoder_cache.open_cache(fp32_cache, str(synth["own"].data_path), "test",
                                 len(synth["own"].as_data_source("test")))
    with pytest.raises(encoder_cache.EncoderCacheError, match="no encoder cache"):
        _take(_pipeline_config(other, use_cache=True), 1)
    # a record whose identity differs from the cached one is refused on read
    cache = encoder_cache.open_cache(fp32_cache, str(synth["own"].data_path), "train", 4)
    rec = dict(synth["own"].as_data_source("train")[1], clip_id=b"someone/else")
    with pytest.raises(encoder_cache.CacheMismatchError, match="someone/else"):
        cache.read(1, rec, "test")


def test_facemesh_condition_renders_are_cached_as_the_pipeline_renders_them(
        video_folder_dataset, encoders, tmp_path):
    """FaceMesh records carry no condition images: the cache pass renders them (dataset basis)
    and their moments must equal the encoding of the pipeline's read-time renders."""
    from data_pipelines.common.cache_pass import CachePassConfig, run_cache_pass
    from mimaface_jax.data.encoder_cache import CacheMismatchError

    out = run_cache_pass(str(video_folder_dataset.data_path), "train", encoders.path,
                         out=str(tmp_path / "facemesh"), log=lambda _: None,
                         config=CachePassConfig(batch=8, moments_dtype="float32",
                                                tokens_dtype="float32"))
    kw = dict(batch_size=2, seed=7)
    plain = _take(_pipeline_config(video_folder_dataset, **kw), 2)
    cached = _take(_pipeline_config(video_folder_dataset, use_cache=True, cache=out, **kw), 2)
    worst = 0.0
    for a, b in zip(plain, cached):
        assert np.array_equal(a["frame_index"], b["frame_index"])
        assert np.array_equal(a["source_index"], b["source_index"])
        np.testing.assert_array_equal(a["motion"], b["motion"])
        assert "cond" not in b and "frames" not in b
        for i in range(2):
            worst = max(worst,
                        _err(b["cond_moments"][i], encoders.moments(a["cond"][i])),
                        _err(b["latent_moments"][i], encoders.moments(a["frames"][i])),
                        _err(b["source_clip_tokens"][i], encoders.tokens(a["source"][i][None])[0]))
    print("FaceMesh cached batch vs encode of the pixel batch, max |diff| / max(1, scale):",
          worst)
    assert worst <= 1e-5
    # a pipeline whose expression basis is another one than the cache's renders is refused
    from mimaface_jax.face.expression import ExpressionPCA
    basis = ExpressionPCA.load(os.path.join(str(video_folder_dataset.data_path),
                                            "expression_basis.npz"))
    other = tmp_path / "other_basis.npz"
    ExpressionPCA(basis.mean + 0.01, basis.components, basis.stddev,
                  whiten=basis.whiten).save(str(other))
    with pytest.raises(CacheMismatchError, match="expression basis"):
        _take(_pipeline_config(video_folder_dataset, use_cache=True, cache=out,
                               expression_basis=str(other)), 1)


def test_cli_reports_missing_encoder_or_dataset_clearly(synth, encoders, tmp_path, capsys):
    from data_pipelines.cache_pass import main
    from mimaface_jax.importers.pretrained_store import write_pretrained
    from mimaface_jax.models.vae import AutoencoderKL, VAEConfig

    vae_config = VAEConfig(**VAE_CONFIG)
    _, vae_state = _random_params(lambda: AutoencoderKL(vae_config, rngs=nnx.Rngs(0)), 0)
    vae_only = str(tmp_path / "vae_only")
    write_pretrained(vae_only, {"vae": vae_state},
                     {"configs": {"vae": dataclasses.asdict(vae_config)}})
    out = str(tmp_path / "cache")
    args = ["--data_dir", synth["data_dir"], "--split", "train", "--out", out]
    assert main([*args, "--dataset", "synth_faces/cache32", "--pretrained", vae_only]) == 2
    assert "lacks the component(s) ['clip']" in capsys.readouterr().err
    assert main([*args, "--dataset", "synth_faces/nope", "--pretrained", encoders.path]) == 2
    assert "no dataset folder" in capsys.readouterr().err
    assert not os.path.exists(out) and os.listdir(tmp_path) == ["vae_only"]
