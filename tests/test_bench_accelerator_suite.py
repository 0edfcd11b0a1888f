"""bench/accelerator_suite.py: the --tiny run writes every field, finite; its chip table and
skip / out-of-memory rules."""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from xla_flags import flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import accelerator_suite as suite  # noqa: E402

TRAIN_NUMBERS = ("lower_s", "compile_s", "init_s", "first_step_s", "step_s_median", "step_s_min",
                 "flops_per_step", "reference_flops_per_step", "tflops_per_s", "xla_tflops_per_s", "mfu",
                 "xla_argument_bytes", "xla_output_bytes", "xla_alias_bytes", "xla_temp_bytes",
                 "peak_memory_bytes", "loss", "wall_s")
GENERATION_NUMBERS = ("first_call_s", "clip_s_median", "clip_s_min", "seconds_per_frame",
                      "frames_per_second_all_devices", "output_abs_mean", "peak_memory_bytes", "wall_s")


def finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_tiny_run_writes_json_and_markdown_with_every_field_finite(tmp_path):
    out, trace = tmp_path / "out", tmp_path / "trace"
    cmd = [sys.executable, "bench/accelerator_suite.py", "--tiny", "--out", str(out),
           "--implementations", "chunked,auto,splash,cudnn", "--steps", "1", "--gen-steps", "1",
           "--peak-tflops", "2.5", "--trace", str(trace), "--budget-s", "0"]
    env = {**os.environ, "XLA_FLAGS": flags(1), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "accelerator_suite.json").read_text())

    device = report["device"]
    assert device["backend"] == "cpu" and device["device_count"] == 1
    assert finite_number(device["reference_flops_per_step"]) and device["reference_flops_per_step"] > 0
    assert (device["frames_per_clip"], device["resolution"], device["global_batch"]) == (20, 32, 1)
    assert report["peak_bf16_tflops"] == 2.5 and report["auto_resolves_to"] == "chunked"

    rows = {row["implementation"]: row for row in report["train"]}
    assert list(rows) == ["chunked", "auto", "splash", "cudnn"]  # auto's kernel first
    measured = rows["chunked"]
    assert measured["status"] == "measured" and measured["finite"] is True
    bad = {k: measured.get(k) for k in TRAIN_NUMBERS if not finite_number(measured.get(k))}
    assert not bad, bad
    assert measured["flops_per_step"] > 0 and measured["step_s_min"] <= measured["step_s_median"]
    assert measured["mfu"] == pytest.approx(measured["tflops_per_s"] / 2.5)
    assert measured["peak_memory_source"].startswith("process max RSS")
    assert rows["auto"]["status"] == "same program" and rows["auto"]["same_as"] == "chunked"
    assert rows["splash"]["status"] == "skipped" and "TPU" in rows["splash"]["reason"]
    assert rows["cudnn"]["status"] == "skipped" and "GPU" in rows["cudnn"]["reason"]
    assert any((trace / "chunked").rglob("*.xplane.pb")), "no profiler trace written"

    gen = report["generation"]
    assert gen["status"] == "measured", gen
    bad = {k: gen.get(k) for k in GENERATION_NUMBERS if not finite_number(gen.get(k))}
    assert not bad, bad
    assert (gen["frames"], gen["context_frames"], gen["guidance_scale"], gen["sampler"]) == (16, 3, 5.0, "euler")
    assert gen["seconds_per_frame"] == pytest.approx(gen["clip_s_median"] / 16)

    md = (out / "accelerator_suite.md").read_text()
    assert "| chunked | measured |" in md and "| auto | same program |" in md and "| splash | skipped |" in md
    assert "s per frame" in md and "bench/accelerator_suite.py --tiny" in md


@pytest.mark.parametrize("kind, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA L4", 121.0), ("TPU v4", 275.0), ("TPU v5 lite", 197.0), ("TPU v5e", 197.0), ("TPU v5p", 459.0),
    ("TPU v6 lite", 918.0), ("NVIDIA H100 PCIe", None), ("NVIDIA L40S", None), ("cpu", None),
])
def test_chip_peaks_match_the_device_kind(kind, peak):
    value, source = suite.chip_peak(kind, None)
    assert value == peak, source
    if peak is None:
        assert "--peak-tflops" in source
    assert suite.chip_peak(kind, 100.0) == (100.0, "--peak-tflops 100")


@pytest.mark.parametrize("impl, backend, dtype, runs", [
    ("splash", "tpu", "bfloat16", True), ("splash", "gpu", "bfloat16", False), ("cudnn", "gpu", "bfloat16", True),
    ("cudnn", "gpu", "float32", False), ("cudnn", "tpu", "bfloat16", False), ("chunked", "cpu", "float32", True),
    ("xla", "tpu", "bfloat16", True),
])
def test_implementations_the_backend_cannot_run_are_skipped_with_a_reason(impl, backend, dtype, runs):
    why = suite.runnable(impl, backend, dtype)
    assert (why is None) == runs, why


def test_only_resource_exhausted_counts_as_does_not_fit():
    assert suite.is_out_of_memory(jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 GiB"))
    assert not suite.is_out_of_memory(jax.errors.JaxRuntimeError("INTERNAL: cuDNN error"))
    assert not suite.is_out_of_memory(MemoryError("RESOURCE_EXHAUSTED"))


@pytest.mark.parametrize("args, message", [
    (["--tiny"], "--out"),
    (["--out", "x", "--steps", "0"], "--steps must be >= 1"),
    (["--out", "x", "--budget-s", "-5"], "--budget-s must be >= 0"),
    (["--out", "x", "--peak-tflops", "-1"], "--peak-tflops must be > 0"),
    (["--out", "x", "--sampler", "dpm"], "invalid choice: 'dpm'"),
])
def test_bad_arguments_are_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        suite.parse_args(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_an_unknown_implementation_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    children = []
    monkeypatch.setattr(suite, "run_child", lambda kind, *a, **k: children.append(kind) or {
        "backend": "cpu", "device_kind": "cpu", "device_count": 1, "reference_flops_per_step": 1.0})
    assert suite.parent(suite.parse_args(["--tiny", "--out", str(tmp_path), "--implementations", "chunked,flash"])) == 2
    assert "unknown ['flash']" in capsys.readouterr().out and children == []
