"""The cluster launchers check their arguments before they start anything."""

import os
import pathlib
import subprocess

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parents[1] / "launch"


def run(script, *args, env=None):
    return subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("script, args, message", [
    ("single_gpu.sh", [], "usage: bash launch/single_gpu.sh CONFIG WORKDIR"),
    ("single_gpu.sh", ["configs/nope.py", "/tmp/w"], "config file 'configs/nope.py' not found"),
    ("tpu_pod.sh", ["my-tpu"], "usage: bash launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR"),
    ("slurm_gpu.sbatch", [], "set CONFIG=configs/<name>.py"),
])
def test_bad_arguments_print_usage_and_exit_2(script, args, message):
    r = run(script, *args, env={"CONFIG": ""} if script.startswith("slurm") else None)
    assert r.returncode != 0 and message in r.stderr, (r.returncode, r.stderr)
    if script != "slurm_gpu.sbatch":
        assert r.returncode == 2
