"""Periodic actions of a training run: progress (steps/s, ETA) in the metrics and on the console,
sample videos + metrics JSON every ``train.sample_every`` steps and at the end, a profiler trace
of the chosen steps, and clu's TensorBoard event files."""

import json

import runner


def test_progress_samples_profile_and_tensorboard(tmp_path, compile_cache, synth_dir):
    work = tmp_path / "run"
    r = runner.run(runner.command(work, f"--config.data.synth_dir={synth_dir}", "--config.sample.num_videos=1",
                                  "--config.train.sample_every=6", "--config.train.profile_start_step=3",
                                  "--config.train.profile_num_steps=2", tensorboard=True), compile_cache)
    assert r.returncode == 0, runner.output(r)

    later = [m for m in runner.metrics(work) if m["step"] > 1]
    assert later and all(m["steps_per_sec"] > 0 and m["eta_min"] >= 0 for m in later)
    assert later[-1]["eta_min"] == 0.0 and "eta_min=" in r.stdout and "steps_per_sec=" in r.stdout

    for step in (6, 12):  # every 6 steps; 12 is also the end
        folder = work / "samples" / f"step_{step}"
        assert (folder / "video_0.mp4").stat().st_size > 0 and (folder / "grid_0.png").stat().st_size > 0
        summary = json.loads((work / "samples" / f"metrics_step_{step}.json").read_text())
        assert summary["step"] == step and len(summary["tasks"]) == 1 and summary["tasks"][0]["kind"] == "cross"
    assert json.loads((work / "eval_metrics.json").read_text())["step"] == 12

    assert "profile: steps 3-4 traced into" in r.stdout
    assert list((work / "profile").rglob("*.xplane.pb"))

    events = list(work.glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0, "clu's TensorBoard writer wrote no event file"
    assert "TensorBoard (clu)" in r.stdout


def test_profile_window_cut_short_by_the_run_end_still_writes_its_trace(tmp_path):
    import jax.numpy as jnp

    from mimaface_jax.training.metrics import ProfileTrace

    lines = []
    trace = ProfileTrace(tmp_path, first=2, num=10, enabled=True, log=lines.append)
    state = jnp.zeros(3)
    for step in range(4):  # the run ends after step 4, inside the window 2-11
        trace.before(step)
        state = state + 1
        trace.after(step + 1, state)
    assert not list((tmp_path / "profile").rglob("*.xplane.pb"))  # still tracing
    trace.close(4, state)
    assert lines == [f"profile: steps 2-4 traced into {tmp_path / 'profile'}"]
    assert list((tmp_path / "profile").rglob("*.xplane.pb"))
