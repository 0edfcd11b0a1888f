"""The training run: validate -> mesh -> model -> (restore | init) -> AOT step -> loop.

Exit codes: 0 finished or stopped by a signal (checkpoint saved), 3 non-finite loss (nothing
saved for the bad step; the last good checkpoint stays the latest). Any exception waits for
the checkpoint saves in flight and closes the checkpoint manager and the metric writers
before it propagates, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import jax
import numpy as np

from mimaface_jax import config_validation
from mimaface_jax.config_validation import ConfigError
from mimaface_jax.models.attention import describe_choice
from mimaface_jax.parallel import shard_batch
from mimaface_jax.training import (checkpointing, data_source, mesh_and_model, model_config, multihost,
                                   sample_tasks, signals, train_step)
from mimaface_jax.training.abstract_run import abstract_run
from mimaface_jax.training.fault_hooks import FaultHooks
from mimaface_jax.training.metrics import ProfileTrace, Progress, make_writer

EXIT_NON_FINITE = 3
FROZEN_FINGERPRINT = "frozen_autoencoder.json"


def log(msg: str) -> None:
    if multihost.is_main():
        print(f"[train] {msg}", flush=True)


def stage1_params(config, model) -> dict:
    """``{name: array}`` of a stage-1 run for the parameters this model shares with it: its EMA
    weights (``init.stage1_weights="ema"``, the weights its samples were made with) or its
    raw ones."""
    which = config.init.stage1_weights
    step, stage1 = checkpointing.restore_params_only(config.init.stage1_checkpoint, weights=which)
    out, fresh = {}, []
    for name, abstract in model.abstract_params.items():
        if name not in stage1:
            fresh.append(name)
            continue
        value = np.asarray(stage1[name])
        if value.shape != abstract.shape:
            raise ConfigError(f"init.stage1_checkpoint={config.init.stage1_checkpoint}: {name} has shape "
                              f"{value.shape} there but {abstract.shape} in this model (was stage 1 trained "
                              "with the same model config?)")
        out[name] = jax.device_put(value.astype(abstract.dtype), abstract.sharding)
    log(f"init: {len(out)} parameters from stage-1 checkpoint {config.init.stage1_checkpoint} (step {step}, "
        f"{which} weights); {len(fresh)} new (e.g. {fresh[:2]})")
    return out


def initial_params(config, model, mesh, rules) -> tuple[dict, dict]:
    params, ae = mesh_and_model.init_params(config, model, mesh, rules)
    if config.init.pretrained:
        from mimaface_jax.training import pretrained_init

        params, ae = pretrained_init.load_pretrained(config, model, params, ae, log)
    if config.stage == "video" and config.init.stage1_checkpoint:
        params.update(stage1_params(config, model))
    return params, ae


def check_frozen_autoencoder(workdir: Path, ae_params: dict, resumed: bool) -> None:
    """The autoencoder is not in the train state: a resumed run rebuilds it and must get the
    same weights as the run's start (same ``init.pretrained`` store, unchanged)."""
    path = workdir / FROZEN_FINGERPRINT
    now = mesh_and_model.fingerprint(ae_params)
    if resumed and path.exists():
        before = json.loads(path.read_text())
        changed = sorted(n for n in set(before) | set(now) if before.get(n) != now.get(n))
        if changed:
            raise ConfigError(f"resume: the frozen autoencoder differs from the one this run started with "
                              f"({len(changed)} arrays, e.g. {changed[:3]}; {path}). Point init.pretrained at "
                              "the store the run started with, or start a new workdir.")
        return
    if multihost.is_main():
        path.write_text(json.dumps(now))


def write_samples(config, model, state, ae_params, workdir, mesh, rules) -> None:
    """Held-out sample videos + their metrics JSON (``training/samples.py``)."""
    if config.sample.num_videos > 0:
        from mimaface_jax.training import samples

        samples.write_samples(config, model, state, ae_params, workdir, mesh, rules, log)


def run(config, workdir: str) -> int:
    signals.default_action()  # until the first step, a signal ends the process at once
    workdir = Path(workdir).absolute()
    config_validation.validate(config, jax.device_count(), jax.process_count())
    sample_tasks.resolve_splits(config, workdir, log)  # before anything is built or compiled
    workdir.mkdir(parents=True, exist_ok=True)
    config_json = config_validation.to_json_dict(config)
    if multihost.is_main():
        (workdir / "config.json").write_text(json.dumps(config_json, indent=1))

    mesh, rules, model, trainable, frozen, tx, state_abs = abstract_run(config)
    log(f"mesh {dict(mesh.shape)} over {jax.device_count()} devices ({jax.process_count()} processes)")
    n_train = sum(model.abstract_params[n].size for n in trainable)
    n_all = sum(x.size for x in model.abstract_params.values())
    log(f"model: {n_all / 1e6:.2f}M parameters, {n_train / 1e6:.2f}M trainable (stage {config.stage})")
    log(describe_choice(model_config.attention_config(config), jax.default_backend(),
                        model_config.dtype_of(config.precision.compute_dtype)))

    with contextlib.ExitStack() as cleanup:
        data = data_source.make_train_iterator(config, workdir, log)
        manager = checkpointing.make_manager(checkpointing.checkpoint_dir(workdir), config)
        cleanup.callback(manager.close)
        cleanup.callback(manager.wait_until_finished)  # runs first: no save is cut short
        latest = manager.latest_step()
        if latest is not None:
            ae_params = mesh_and_model.load_autoencoder(config, model, mesh, rules, log)
            state, data_state = checkpointing.restore(manager, latest, state_abs)
            data.set_state(data_state)
            log(f"resumed from {manager.directory}/{latest} (data state {data_source.describe(data_state)})")
        else:
            params, ae_params = initial_params(config, model, mesh, rules)
            state = train_step.initial_state(config, params, trainable, frozen, tx, state_abs)
            del params
        check_frozen_autoencoder(workdir, ae_params, resumed=latest is not None)

        t0 = time.perf_counter()
        compiled = train_step.compile_train_step(config, model, tx, state_abs, mesh, rules).compile()
        log(f"compiled the train step ahead of time in {time.perf_counter() - t0:.1f}s")

        writer = make_writer(workdir, multihost.is_main(), log, tensorboard=config.train.tensorboard)
        cleanup.callback(writer.close)
        profile = ProfileTrace(workdir, config.train.profile_start_step, config.train.profile_num_steps,
                               multihost.is_main(), log)
        stop = signals.StopRequest(log).arm()
        return _train(config, workdir, model, mesh, rules, compiled, state, ae_params, data, manager, writer,
                      profile, stop, config_json, latest)


def _train(config, workdir, model, mesh, rules, compiled, state, ae_params, data, manager, writer, profile,
           stop, config_json, last_saved) -> int:
    """The step loop (the caller closes the manager and the writer, also on an exception)."""
    hooks = FaultHooks(config.debug)
    step = int(jax.device_get(state["step"]))
    progress = Progress(config.train.num_steps)
    skipped = 0
    try:
        while step < config.train.num_steps:
            local = next(data)
            if data.report["skipped"] != skipped:  # corrupt records passed over (logged by the source)
                skipped = data.report["skipped"]
                writer.write_scalars(step, {"data_skipped_records": skipped})
            batch = shard_batch(hooks.batch(step, local), mesh, rules)
            profile.before(step)
            state, metrics = compiled(state, ae_params, batch)
            profile.after(step + 1, state)
            m = train_step.host_scalars(metrics)
            if not m["finite"]:
                log(f"NON-FINITE at step {step + 1}: loss={m['loss']}, grad_norm={m['grad_norm']}; the update "
                    f"was dropped and the run stops WITHOUT saving (last good checkpoint: step "
                    f"{manager.latest_step()})")
                writer.write_scalars(step + 1, {"non_finite": 1.0, "loss": m["loss"], "grad_norm": m["grad_norm"]})
                return EXIT_NON_FINITE
            step += 1
            hooks.after_step(step)
            if step % config.train.log_every == 0 or step == config.train.num_steps:
                m.pop("finite")
                m.update(progress.update(step))
                writer.write_scalars(step, m)
            stopping = stop.requested()
            if step % config.checkpoint.every == 0 or step == config.train.num_steps or stopping:
                checkpointing.save(manager, step, state, data.get_state(), config_json, force=True)
                last_saved = step
            hooks.after_save(step)
            if hooks.pauses_after(step) and not stopping:
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
    finally:
        profile.close(step, state)
    manager.wait_until_finished()
    if step >= config.train.num_steps:
        write_samples(config, model, state, ae_params, workdir, mesh, rules)
    log(f"done at step {step} (last checkpoint {last_saved})")
    return 0
