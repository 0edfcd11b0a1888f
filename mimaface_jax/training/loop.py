"""The training run: validate -> mesh -> model -> (restore | init) -> AOT step -> loop.

Exit codes: 0 finished or stopped by a signal (checkpoint saved), 3 non-finite loss (nothing
saved for the bad step; the last good checkpoint stays the latest).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from mimaface_jax import config_validation
from mimaface_jax.parallel import shard_batch
from mimaface_jax.training import (checkpointing, data_source, mesh_and_model, multihost, optimizer, signals,
                                   train_step)
from mimaface_jax.training.metrics import ProfileTrace, Progress, make_writer

EXIT_NON_FINITE = 3


def log(msg: str) -> None:
    if multihost.is_main():
        print(f"[train] {msg}", flush=True)


def poison(batch: dict) -> dict:
    """Fault injection (``debug.nan_at_step``): a batch whose float inputs are NaN, as a broken
    record would give; the compiled step is the normal one."""
    return {k: np.full_like(v, np.nan) if np.issubdtype(v.dtype, np.floating) else v for k, v in batch.items()}


def initial_params(config, model, mesh, rules) -> tuple[dict, dict]:
    params, ae = mesh_and_model.init_params(config, model, mesh, rules)
    if config.init.pretrained:
        from mimaface_jax.training import pretrained_init

        params, ae = pretrained_init.load_pretrained(config, model, params, ae, log)
    if config.stage == "video" and config.init.stage1_checkpoint:
        step, stage1 = checkpointing.restore_params_only(config.init.stage1_checkpoint)
        loaded, fresh = [], []
        for name, abstract in model.abstract_params.items():
            if name in stage1:
                value = np.asarray(stage1[name])
                if value.shape != abstract.shape:
                    raise ValueError(f"init.stage1_checkpoint: {name} has shape {value.shape} there but "
                                     f"{abstract.shape} in this model")
                params[name] = jax.device_put(value.astype(abstract.dtype), abstract.sharding)
                loaded.append(name)
            else:
                fresh.append(name)
        log(f"init: {len(loaded)} parameters from stage-1 checkpoint {config.init.stage1_checkpoint} "
            f"(step {step}); {len(fresh)} new (e.g. {fresh[:2]})")
    return params, ae


def write_samples(config, model, state, ae_params, workdir, mesh, rules) -> None:
    """Held-out sample videos + their metrics JSON (``training/samples.py``)."""
    if config.sample.num_videos > 0:
        from mimaface_jax.training import samples

        samples.write_samples(config, model, state, ae_params, workdir, mesh, rules, log)


def run(config, workdir: str) -> int:
    workdir = Path(workdir).absolute()
    config_validation.validate(config, jax.device_count(), jax.process_count())
    workdir.mkdir(parents=True, exist_ok=True)
    config_json = config_validation.to_json_dict(config)
    if multihost.is_main():
        (workdir / "config.json").write_text(json.dumps(config_json, indent=1))
    writer = make_writer(workdir, multihost.is_main(), log, tensorboard=config.train.tensorboard)
    stop = signals.StopRequest(log).install()

    mesh, rules = mesh_and_model.build_mesh(config)
    log(f"mesh {dict(mesh.shape)} over {jax.device_count()} devices ({jax.process_count()} processes)")
    model = mesh_and_model.abstract_model(config, mesh, rules)
    trainable, frozen = optimizer.split_trainable(model.spec.names, config)
    tx = optimizer.make_optimizer(config)
    state_abs = train_step.abstract_state(config, model, trainable, frozen, tx, mesh)
    n_train = sum(model.abstract_params[n].size for n in trainable)
    n_all = sum(x.size for x in model.abstract_params.values())
    log(f"model: {n_all / 1e6:.2f}M parameters, {n_train / 1e6:.2f}M trainable (stage {config.stage})")

    data = data_source.make_train_iterator(config, workdir, log)
    manager = checkpointing.make_manager(checkpointing.checkpoint_dir(workdir), config)
    latest = manager.latest_step()
    if latest is not None:
        ae_params = mesh_and_model.init_autoencoder(config, model, mesh, rules)
        state, data_state = checkpointing.restore(manager, latest, state_abs)
        data.set_state(data_state)
        log(f"resumed from {manager.directory}/{latest} (data state {data_source.describe(data_state)})")
    else:
        params, ae_params = initial_params(config, model, mesh, rules)
        state = train_step.initial_state(config, params, trainable, frozen, tx, state_abs)
        del params

    t0 = time.perf_counter()
    compiled = train_step.compile_train_step(config, model, tx, state_abs, mesh, rules).compile()
    log(f"compiled the train step ahead of time in {time.perf_counter() - t0:.1f}s")

    step = int(jax.device_get(state["step"]))
    progress = Progress(config.train.num_steps)
    profile = ProfileTrace(workdir, config.train.profile_start_step, config.train.profile_num_steps,
                           multihost.is_main(), log)
    last_saved = latest
    skipped = 0
    while step < config.train.num_steps:
        local = next(data)
        if data.report["skipped"] != skipped:  # corrupt records passed over (logged by the source)
            skipped = data.report["skipped"]
            writer.write_scalars(step, {"data_skipped_records": skipped})
        if step == config.debug.nan_at_step:
            local = poison(local)
        batch = shard_batch(local, mesh, rules)
        profile.before(step)
        state, metrics = compiled(state, ae_params, batch)
        profile.after(step + 1, state)
        m = train_step.host_scalars(metrics)
        if not m["finite"]:
            log(f"NON-FINITE at step {step + 1}: loss={m['loss']}, grad_norm={m['grad_norm']}; the update was "
                f"dropped and the run stops WITHOUT saving (last good checkpoint: step {manager.latest_step()})")
            profile.close(step + 1, state)
            manager.wait_until_finished()
            writer.write_scalars(step + 1, {"non_finite": 1.0, "loss": m["loss"], "grad_norm": m["grad_norm"]})
            writer.close()
            manager.close()
            return EXIT_NON_FINITE
        step += 1
        if config.debug.sleep_per_step:
            time.sleep(config.debug.sleep_per_step)
        if step % config.train.log_every == 0 or step == config.train.num_steps:
            m.pop("finite")
            m.update(progress.update(step))
            writer.write_scalars(step, m)
        stopping = stop.requested()
        if step % config.checkpoint.every == 0 or step == config.train.num_steps or stopping:
            checkpointing.save(manager, step, state, data.get_state(), config_json, force=True)
            last_saved = step
        if step == config.debug.pause_after_step and not stopping:
            manager.wait_until_finished()
            log(f"debug.pause_after_step: paused after step {step} (checkpoints finished: "
                f"{manager.all_steps()}); waiting for a stop signal")
            while not stop.requested():
                time.sleep(0.05)
            stopping = True
            if last_saved != step:
                checkpointing.save(manager, step, state, data.get_state(), config_json, force=True)
                last_saved = step
        if stopping:
            manager.wait_until_finished()
            log(f"stopped by signal at step {step}; checkpoint {step} saved")
            break
        every = config.train.sample_every
        if every and step % every == 0 and step < config.train.num_steps:
            write_samples(config, model, state, ae_params, workdir, mesh, rules)
    profile.close(step, state)
    manager.wait_until_finished()
    if step >= config.train.num_steps:
        write_samples(config, model, state, ae_params, workdir, mesh, rules)
    writer.close()
    manager.close()
    log(f"done at step {step} (last checkpoint {last_saved})")
    return 0
