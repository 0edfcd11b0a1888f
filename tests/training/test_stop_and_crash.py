"""Signals at every phase of a run, and an exception right after a checkpoint save.

- Ctrl-C (SIGINT) during start-up (model build, compilation) ends the process at once: no step,
  no checkpoint, killed by the signal.
- During training the first signal checkpoints and stops (tests/training/test_checkpoint_resume.py),
  a second one ends the process at once.
- An exception right after an asynchronous save (``debug.raise_after_step``, as a failing
  sample writer would raise) propagates only after the save has finished: the checkpoint is
  complete and the trainer restores it; the metrics written so far are flushed.
"""

import signal
import time

import runner
from mimaface_jax.training import checkpointing
from mimaface_jax.training.abstract_run import abstract_run


def _wait_for_text(path, text, proc, what):
    runner.wait_for(lambda: text in path.read_text(), proc, what=what)


def test_sigint_during_startup_aborts_at_once(tmp_path, compile_cache, synth_dir):
    log = tmp_path / "run.log"
    proc = runner.start(runner.command(tmp_path / "w", f"--config.data.synth_dir={synth_dir}"), compile_cache,
                        log_path=log)
    _wait_for_text(log, "[train] mesh", proc, "the mesh log line (start-up)")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    text = log.read_text()
    assert proc.returncode == -signal.SIGINT, text
    assert "compiled the train step" not in text and "step 1:" not in text
    assert runner.finished_steps(tmp_path / "w") == []


def test_second_signal_during_training_exits_immediately(tmp_path, compile_cache, synth_dir):
    log = tmp_path / "run.log"
    proc = runner.start(runner.command(tmp_path / "w", f"--config.data.synth_dir={synth_dir}",
                                       "--config.debug.sleep_per_step=2.0"), compile_cache, log_path=log)
    _wait_for_text(log, "step 1:", proc, "the first step")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    text = log.read_text()
    assert proc.returncode == -signal.SIGINT, text
    assert "finishing the current step" in text and "exiting immediately" in text
    assert "stopped by signal" not in text


def test_exception_after_async_save_leaves_a_complete_checkpoint(tmp_path, compile_cache, synth_dir):
    work = tmp_path / "w"
    r = runner.run(runner.command(work, f"--config.data.synth_dir={synth_dir}", "--config.debug.raise_after_step=4",
                                  "--config.checkpoint.async_save=True"), compile_cache)
    assert r.returncode == 1, runner.output(r)
    assert "InjectedFault" in r.stderr
    assert runner.finished_steps(work) == [4]
    assert sorted(runner.losses(work)) == [1, 2, 3, 4]  # the writer was flushed and closed

    c = runner.load_config("tiny", "image_min")
    state_abs = abstract_run(c).state
    with checkpointing.make_manager(checkpointing.checkpoint_dir(work), c) as manager:
        assert manager.latest_step() == 4
        state, data_state = checkpointing.restore(manager, 4, state_abs)
    assert int(state["step"]) == 4 and data_state
