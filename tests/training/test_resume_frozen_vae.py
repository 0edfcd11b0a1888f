"""Resume with a real (pretrained, frozen) KL-VAE: the autoencoder is not in the train state,
so a resumed run must rebuild exactly the one the run started with.

The run: ``tiny.py:image_min`` with a tiny KL-VAE whose weights come from ``init.pretrained``
(a store written like ``convert all``'s, random seeded values that differ from the VAE's own
init). An 8-step run straight through is the reference; the same run stopped by SIGTERM after
step 4 and restarted must log the same losses for steps 5..8 (before the fix the restart built a
randomly initialised VAE and trained on its latents). A fixed image encodes to the same latents
with the autoencoder the trainer rebuilds on resume as with the store's VAE. A resume whose
store changed in between stops with a message instead of training on other latents.
"""

import shutil
import signal

import jax
import numpy as np
import pytest
from flax import nnx

import runner
from mimaface_jax.importers.pretrained_store import write_pretrained
from mimaface_jax.training import mesh_and_model
from mimaface_jax.training.train_step import encode_frames

VAE = ["--config.autoencoder.kind=vae", "--config.autoencoder.vae_block_out_channels=(8, 16)",
       "--config.autoencoder.vae_layers_per_block=1", "--config.autoencoder.vae_norm_num_groups=4",
       "--config.autoencoder.latent_channels=4", "--config.autoencoder.scaling_factor=0.5"]
STEPS = ["--config.train.num_steps=8", "--config.checkpoint.every=4"]


def vae_config(store=""):
    c = runner.load_config("tiny", "image_min")
    c.autoencoder.kind = "vae"
    c.autoencoder.vae_block_out_channels = (8, 16)
    c.autoencoder.vae_layers_per_block = 1
    c.autoencoder.vae_norm_num_groups = 4
    c.autoencoder.latent_channels = 4
    c.autoencoder.scaling_factor = 0.5
    c.init.pretrained = str(store)
    return c


def write_store(path, seed):
    """A pretrained store with the model's U-Net and CLIP and a KL-VAE, random seeded values."""
    c = vae_config()
    _, model_factory, ae_factory = mesh_and_model.model_factories(c)
    rng = np.random.default_rng(seed)
    rand = lambda tree: jax.tree.map(lambda x: (0.3 * rng.normal(size=x.shape)).astype(x.dtype), tree)  # noqa: E731
    model = rand(nnx.state(nnx.eval_shape(model_factory), nnx.Param))
    vae = rand(nnx.state(nnx.eval_shape(ae_factory), nnx.Param))
    write_pretrained(path, {"unet": model["unet"], "clip": model["clip"], "vae": vae}, {"note": "test"})
    return {n: np.asarray(v) for n, v in mesh_and_model.flatten_state(vae).items()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("vae_store") / "store"
    return path, write_store(path, seed=3)


def test_resumed_run_uses_the_pretrained_vae(tmp_path, compile_cache, synth_dir, store):
    path, stored_vae = store
    flags = [*VAE, f"--config.init.pretrained={path}", f"--config.data.synth_dir={synth_dir}", *STEPS]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    r = runner.run(runner.command(straight, *flags), compile_cache)
    assert r.returncode == 0, runner.output(r)
    assert "init: vae" in r.stdout
    reference = runner.losses(straight)
    assert sorted(reference) == list(range(1, 9))

    proc = runner.start(runner.command(stopped, *flags, "--config.debug.pause_after_step=4"), compile_cache,
                        log_path=tmp_path / "a.log")
    runner.wait_for(lambda: "paused after step 4" in (tmp_path / "a.log").read_text(), proc, what="step 4")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 0, (tmp_path / "a.log").read_text()
    assert runner.finished_steps(stopped) == [4]
    r = runner.run(runner.command(stopped, *flags), compile_cache)
    assert r.returncode == 0, runner.output(r)
    assert "resumed from" in r.stdout and "init: vae" in r.stdout
    resumed = runner.losses(stopped)
    assert sorted(resumed) == list(range(1, 9))
    for step in range(1, 9):
        assert resumed[step] == reference[step], (step, resumed[step], reference[step])

    # the autoencoder a resume rebuilds encodes like the store's VAE
    c = vae_config(path)
    mesh, rules = mesh_and_model.build_mesh(c)
    model = mesh_and_model.abstract_model(c, mesh, rules)
    rebuilt = mesh_and_model.load_autoencoder(c, model, mesh, rules, log=lambda _: None)
    image = np.random.default_rng(0).integers(0, 256, size=(1, 1, 32, 32, 3), dtype=np.uint8)
    ours = np.asarray(encode_frames(model.ae_spec.merge(rebuilt), image, None))
    reference_ae = model.ae_spec.merge({n: jax.numpy.asarray(v) for n, v in stored_vae.items()})
    expected = np.asarray(encode_frames(reference_ae, image, None))
    random_init = mesh_and_model.init_autoencoder(c, model, mesh, rules)
    other = np.asarray(encode_frames(model.ae_spec.merge(random_init), image, None))
    assert np.abs(expected - other).max() > 1e-2  # the store's VAE is not the seeded init
    # equal up to float rounding (the rebuilt VAE is sharded over the test's 8 devices)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)

    # a changed store under a run in progress: refused, nothing trained on other latents
    changed = tmp_path / "changed_store"
    write_store(changed, seed=4)
    shutil.rmtree(path)
    shutil.copytree(changed, path)
    r = runner.run(runner.command(stopped, *flags, "--config.train.num_steps=8"), compile_cache)
    # the run had finished: resuming a finished run still checks the autoencoder first
    assert r.returncode == 2, runner.output(r)
    assert "frozen autoencoder differs" in r.stderr and "Traceback" not in r.stderr
