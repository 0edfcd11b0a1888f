"""Resume is exact, on the grain/TFDS data source (the iterator state is in every checkpoint).

One uninterrupted 20-step run is the reference. The same run is
  A) stopped after 10 steps with SIGKILL (``debug.pause_after_step=10``: the process holds there,
     checkpoint 10 finished, until it is killed), then
  B) restarted for the remaining 10 steps             -> bitwise-equal state and per-step losses;
  C) from a copy of A's workdir: restarted with slowed steps and sent SIGTERM mid-run -> exit 0
     and a checkpoint at the step it was on, which the trainer's restore reads back (the
     resumed-run path itself is B's).
"""

import re
import shutil
import signal

import jax
import numpy as np

import runner
from mimaface_jax.training import checkpointing, mesh_and_model, optimizer, train_step

STEPS = ["--config.train.num_steps=20", "--config.checkpoint.every=5"]  # checkpoint.max_to_keep = 2


def tfds_flags(data_dir):
    return ["--config.data.source=tfds", f"--config.data.tfds_data_dir={data_dir}",
            "--config.data.mixture=synth_faces=1", *STEPS]


def assert_same_state(a, b):
    for part in ("trainable", "ema", "opt_state"):
        assert jax.tree.structure(a[part]) == jax.tree.structure(b[part])
        for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a[part]), jax.tree.leaves(b[part])):
            np.testing.assert_array_equal(x, y, err_msg=f"{part}{jax.tree_util.keystr(path)}")
    assert a["trainable"].keys() == b["trainable"].keys() and len(a["trainable"]) > 100
    np.testing.assert_array_equal(a["rng"], b["rng"])
    assert int(a["step"]) == int(b["step"])


def test_kill_9_and_sigterm_then_resume_are_exact(tmp_path, compile_cache, synth_tfds):
    data = tfds_flags(synth_tfds)
    straight, killed, termed = tmp_path / "straight", tmp_path / "killed", tmp_path / "termed"
    r = runner.run(runner.command(straight, *data), compile_cache)
    assert r.returncode == 0, runner.output(r)
    assert runner.finished_steps(straight) == [15, 20]
    reference = runner.load_state(straight, 20)
    la = runner.losses(straight)
    assert sorted(la) == list(range(1, 21))

    # A) 10 steps, then SIGKILL while the process holds after checkpoint 10
    proc = runner.start(runner.command(killed, *data, "--config.debug.pause_after_step=10"), compile_cache,
                        log_path=tmp_path / "a.log")
    runner.wait_for(lambda: "paused after step 10" in (tmp_path / "a.log").read_text(), proc, what="step 10")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert runner.finished_steps(killed) == [5, 10]
    assert sorted(runner.losses(killed)) == list(range(1, 11))
    shutil.copytree(killed, termed)

    # B) the restart does the remaining 10 steps
    r = runner.run(runner.command(killed, *data), compile_cache)
    assert r.returncode == 0, runner.output(r)
    assert "checkpoints/10 " in r.stdout  # "resumed from .../checkpoints/10 (data state ...)"
    assert_same_state(reference, runner.load_state(killed, 20))
    assert runner.losses(killed) == la  # bitwise-equal per-step losses (a step logged twice must agree too)

    # C) restart, SIGTERM mid-run -> a checkpoint at the current step, exit 0
    slow = [*data, "--config.debug.sleep_per_step=0.3"]
    proc = runner.start(runner.command(termed, *slow), compile_cache, log_path=tmp_path / "c.log")
    runner.wait_for(lambda: max(runner.losses(termed)) >= 12, proc, what="2 steps after resuming")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, (tmp_path / "c.log").read_text()[-3000:]
    log_c = (tmp_path / "c.log").read_text()
    assert "resumed from" in log_c and "received SIGTERM" in log_c
    stopped = int(re.search(r"stopped by signal at step (\d+); checkpoint \1 saved", log_c).group(1))
    assert 12 <= stopped < 20
    assert max(runner.losses(termed)) == stopped  # the step it was on when the signal came
    assert runner.finished_steps(termed)[-1] == stopped
    assert runner.load_data_state(termed, stopped)["processes"][0]["grain"]["next_index"] == 4 * stopped
    # restored as the trainer restores it (abstract state with shardings, this process's data state)
    c = runner.load_config("tiny", "image_min")
    mesh, rules = mesh_and_model.build_mesh(c)
    model = mesh_and_model.abstract_model(c, mesh, rules)
    trainable, frozen = optimizer.split_trainable(model.spec.names, c)
    state_abs = train_step.abstract_state(c, model, trainable, frozen, optimizer.make_optimizer(c), mesh)
    with checkpointing.make_manager(checkpointing.checkpoint_dir(termed), c) as manager:
        assert manager.latest_step() == stopped
        state, data_state = checkpointing.restore(manager, stopped, state_abs)
    assert int(state["step"]) == stopped and data_state["grain"]["next_index"] == 4 * stopped
    # the straight run passed through the same step: its losses up to there are the same
    assert {s: la[s] for s in range(1, stopped + 1)} == runner.losses(termed)
