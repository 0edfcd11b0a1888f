"""Resume is exact, on the grain/TFDS data source (iterator state in every checkpoint):
an uninterrupted 12-step run == the same run killed with SIGKILL after checkpoint 4, resumed,
stopped by SIGTERM mid-run (-> checkpoint at that step, exit 0), and resumed to the end:
bitwise-equal parameters, EMA and per-step losses."""

import signal

import jax
import numpy as np

import runner


def tfds_flags(data_dir):
    return ["--config.data.source=tfds", f"--config.data.tfds_data_dir={data_dir}",
            "--config.data.mixture=synth_faces=1"]


def test_kill_9_sigterm_and_resume_are_exact(tmp_path, compile_cache, synth_tfds):
    data = tfds_flags(synth_tfds)
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    r = runner.run(runner.command(straight, *data), compile_cache)
    assert r.returncode == 0, runner.output(r)
    assert runner.finished_steps(straight) == [8, 12]  # checkpoint.max_to_keep = 2

    # 1) slowed down; SIGKILL as soon as checkpoint 4 is finalized (long before step 8)
    slow = [*data, "--config.debug.sleep_per_step=0.25"]
    proc = runner.start(runner.command(broken, *slow), compile_cache, log_path=tmp_path / "run1.log")
    runner.wait_for(lambda: 4 in runner.finished_steps(broken), proc, what="checkpoint 4")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert runner.finished_steps(broken) == [4]

    # 2) resumes from 4; SIGTERM after two more logged steps -> checkpoint there, exit 0
    logged = len(runner.metrics(broken))  # run 1 may have logged a step after checkpoint 4
    proc = runner.start(runner.command(broken, *slow), compile_cache, log_path=tmp_path / "run2.log")
    runner.wait_for(lambda: len(runner.metrics(broken)) >= logged + 2, proc, what="2 steps after resuming")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, (tmp_path / "run2.log").read_text()[-3000:]
    log2 = (tmp_path / "run2.log").read_text()
    assert "resumed from" in log2 and "stopped by signal" in log2
    stopped = max(runner.losses(broken))
    assert 6 <= stopped < 12  # resumed at 4, then >= 2 steps
    assert runner.finished_steps(broken)[-1] == stopped
    state = runner.load_state(broken, stopped)
    assert int(state["step"]) == stopped
    # the grain iterator position of the stop (4 samples per step)
    assert runner.load_data_state(broken, stopped)["processes"][0]["grain"]["next_index"] == 4 * stopped

    # 3) resumes from the SIGTERM checkpoint and finishes
    r = runner.run(runner.command(broken, *data), compile_cache)
    assert r.returncode == 0, runner.output(r)
    assert f"checkpoints/{stopped} " in r.stdout

    a, b = runner.load_state(straight, 12), runner.load_state(broken, 12)
    for part in ("trainable", "ema", "opt_state"):
        assert jax.tree.structure(a[part]) == jax.tree.structure(b[part])
        for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a[part]), jax.tree.leaves(b[part])):
            np.testing.assert_array_equal(x, y, err_msg=f"{part}{jax.tree_util.keystr(path)}")
    assert a["trainable"].keys() == b["trainable"].keys() and len(a["trainable"]) > 100
    la, lb = runner.losses(straight), runner.losses(broken)
    assert sorted(la) == list(range(1, 13)) and sorted(lb) == list(range(1, 13))
    assert la == lb  # bitwise-equal per-step losses (floats from the same bits)
