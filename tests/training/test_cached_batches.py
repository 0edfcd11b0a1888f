"""data.use_cache: the train step takes cached VAE moments + CLIP tokens (no CLIP tower, no
encoder in the step): latents are drawn from the moments and scaled, tokens pass through, and
the AOT step lowers against that batch."""

import jax
import numpy as np

import runner
from mimaface_jax.training import mesh_and_model, optimizer, train_step


def cached_config():
    """image_min reading cached moments + CLIP tokens, with a tiny KL-VAE."""
    c = runner.load_config("tiny", "image_min")
    c.data.source = "tfds"
    c.data.tfds_data_dir = "/unused"            # the step only; no data is read here
    c.data.use_cache = True
    c.model.clip.enabled = False
    c.model.clip.num_tokens, c.model.clip.hidden_size = 5, 16
    c.autoencoder.kind = "vae"
    c.autoencoder.vae_block_out_channels = (8, 8)
    c.autoencoder.vae_norm_num_groups = 4
    c.data.resolution = 16
    c.data.global_batch_size = 8              # one per device (8 in the test process)
    return c


def test_cached_batches_feed_the_step_without_encoders():
    c = cached_config()
    c.optimizer.warmup_steps = 0              # the first step already has a learning rate
    mesh, rules = mesh_and_model.build_mesh(c)
    model = mesh_and_model.abstract_model(c, mesh, rules)
    assert not any(n.startswith("clip.") for n in model.abstract_params)
    shapes = train_step.batch_shapes(c)
    assert sorted(shapes) == ["cond_moments", "identity", "latent_moments", "motion", "source_clip_tokens"]
    assert shapes["latent_moments"].shape == (8, 1, 8, 8, 8)  # 16 / 2 (two VAE levels), 2 x 4 channels

    # cached moments with a (near) zero variance -> the scaled means; tokens pass through
    rng = np.random.default_rng(0)
    batch = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in shapes.items()}
    for key in ("latent_moments", "cond_moments"):
        batch[key][..., 4:] = -30.0  # logvar
    out = train_step.model_batch(c, model, {}, batch, jax.random.key(0))
    scale = c.autoencoder.scaling_factor
    np.testing.assert_allclose(np.asarray(out["latents"]), batch["latent_moments"][..., :4] * scale, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["cond_latents"]), batch["cond_moments"][..., :4] * scale, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["source_clip_tokens"]), batch["source_clip_tokens"])
    assert "source_pixels" not in out

    # the AOT step lowers against the cached batch (no CLIP tower / encoder in it)
    trainable, frozen = optimizer.split_trainable(model.spec.names, c)
    tx = optimizer.make_optimizer(c)
    state_abs = train_step.abstract_state(c, model, trainable, frozen, tx, mesh)
    lowered = train_step.compile_train_step(c, model, tx, state_abs, mesh, rules)
    assert "source_clip_tokens" in str(lowered.args_info)


def test_latents_key_chooses_posterior_mean_or_sample():
    """autoencoder.latents: "mean" trains on the posterior means, "sample" on draws from it."""
    c = cached_config()
    mesh, rules = mesh_and_model.build_mesh(c)
    model = mesh_and_model.abstract_model(c, mesh, rules)
    shapes = train_step.batch_shapes(c)
    rng = np.random.default_rng(1)
    batch = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in shapes.items()}  # logvar ~ N(0, 1)
    means = batch["latent_moments"][..., :4] * c.autoencoder.scaling_factor
    c.autoencoder.latents = "mean"
    out = train_step.model_batch(c, model, {}, batch, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(out["latents"]), means)
    c.autoencoder.latents = "sample"
    out = train_step.model_batch(c, model, {}, batch, jax.random.key(0))
    assert np.abs(np.asarray(out["latents"]) - means).mean() > 0.05


def test_cached_run_with_samples_is_refused_before_compiling(tmp_path, compile_cache):
    """data.use_cache has no source pixels for the held-out sample videos: the combination is
    rejected with a message naming the keys (exit 2), before anything is built."""
    r = runner.run(runner.command(tmp_path / "w", "--config.data.source=tfds", "--config.data.tfds_data_dir=/unused",
                                  "--config.data.use_cache=True", "--config.model.clip.enabled=False",
                                  "--config.autoencoder.kind=vae", "--config.sample.num_videos=2"), compile_cache)
    assert r.returncode == 2, runner.output(r)
    assert "data.use_cache=True with sample.num_videos > 0" in r.stderr and "Traceback" not in r.stderr
    assert "[train] mesh" not in r.stdout
