"""The cluster launchers and the installer check their arguments before they start anything;
``tpu_pod.sh`` sends the right command to every worker (a stand-in ``gcloud`` runs it here)."""

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"


def run(script, *args, env=None):
    """``bash launch/<script> args`` (``script`` a name in launch/ or a path)."""
    path = script if isinstance(script, pathlib.Path) else LAUNCH / script
    return subprocess.run(["bash", str(path), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("script, args, message", [
    ("single_gpu.sh", [], "usage: bash launch/single_gpu.sh CONFIG WORKDIR"),
    ("single_gpu.sh", ["configs/nope.py", "/tmp/w"], "config file 'configs/nope.py' not found"),
    ("tpu_pod.sh", ["my-tpu"], "usage: bash launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR"),
    ("tpu_pod.sh", ["setup", "my-tpu"], "bash launch/tpu_pod.sh setup TPU_NAME ZONE [GIT_URL [REF]]"),
    ("tpu_pod.sh", ["setup", "t", "z", "u", "r", "extra"], "bash launch/tpu_pod.sh setup TPU_NAME ZONE"),
    ("tpu_pod.sh", ["setup", "t", "z", "--upload-pack=x"], "GIT_URL '--upload-pack=x' must not"),
    ("tpu_pod.sh", ["setup", "t", "z", "https://h/r.git", "main; rm -rf ~"], "REF 'main; rm -rf ~' must not"),
    ("slurm_gpu.sbatch", [], "set CONFIG=configs/<name>.py"),
])
def test_bad_arguments_print_usage_and_exit_2(script, args, message):
    r = run(script, *args, env={"CONFIG": ""} if script.startswith("slurm") else None)
    assert r.returncode != 0 and message in r.stderr, (r.returncode, r.stderr)
    if script != "slurm_gpu.sbatch":
        assert r.returncode == 2


def test_tpu_pod_rejects_a_repo_path_the_remote_shell_would_reinterpret():
    r = run("tpu_pod.sh", "setup", "t", "z", "https://h/r.git", "main", env={"REPO_ON_WORKERS": "~/a b;x"})
    assert r.returncode == 2 and "REPO_ON_WORKERS='~/a b;x' must be a plain path" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["nope"], ["gpu", "tpu"], ["cuda"]])
def test_install_script_validates_its_mode_before_touching_anything(args):
    r = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), *args], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHON": "/nonexistent/python"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "usage: bash scripts/install.sh [runtime|tf|test|gpu|tpu]" in r.stderr


# ------------------------------------------------------------------ tpu_pod.sh with a stand-in gcloud


def fake_gcloud(bin_dir: pathlib.Path, log: pathlib.Path) -> None:
    """A ``gcloud`` that appends its argv (JSON, one line) to ``log`` and runs ``--command``
    with /bin/sh (as a worker's login shell would), as if the pod had one worker."""
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text(f"""#!{sys.executable}
import json, subprocess, sys
with open({str(log)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
command = sys.argv[sys.argv.index("--command") + 1]
sys.exit(subprocess.run(["/bin/sh", "-c", command]).returncode)
""")
    script.chmod(0o755)


def git(cwd, *args) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def source_repo(path: pathlib.Path, install_log: pathlib.Path) -> pathlib.Path:
    """A git repository whose scripts/install.sh records how it was called (mode, $PYTHON, commit)."""
    (path / "scripts").mkdir(parents=True)
    (path / "scripts" / "install.sh").write_text(
        f'echo "$1 PYTHON=$PYTHON $(git rev-parse HEAD) $(pwd)" >> {shlex.quote(str(install_log))}\n')
    git(path.parent, "init", "-q", "-b", "main", str(path))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return path


@pytest.fixture
def pod(tmp_path):
    install_log, gcloud_log = tmp_path / "install.log", tmp_path / "gcloud.log"
    fake_gcloud(tmp_path / "bin", gcloud_log)
    src = source_repo(tmp_path / "src", install_log)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "REPO_ON_WORKERS": str(tmp_path / "worker" / "mf")}
    return tmp_path, src, env, install_log, gcloud_log


def test_tpu_pod_setup_clones_then_updates_and_installs_the_tpu_set_on_every_worker(pod):
    tmp_path, src, env, install_log, gcloud_log = pod
    worker = tmp_path / "worker" / "mf"
    first = git(src, "rev-parse", "HEAD")
    r = run("tpu_pod.sh", "setup", "my-tpu", "us-central2-b", str(src), "main", env=env)
    assert r.returncode == 0, r.stderr
    argv = json.loads(gcloud_log.read_text().splitlines()[0])
    assert argv[:9] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--zone", "us-central2-b", "--worker=all",
                        "--command"], argv
    assert git(worker, "rev-parse", "HEAD") == first
    assert install_log.read_text().splitlines() == [f"tpu PYTHON=python3.11 {first} {worker}"]

    # a new commit on the branch: the second setup fetches it into the existing clone
    (src / "README").write_text("second\n")
    git(src, "add", "README")
    git(src, "commit", "-q", "-m", "second")
    second = git(src, "rev-parse", "HEAD")
    r = run("tpu_pod.sh", "setup", "my-tpu", "us-central2-b", str(src), "main",
            env={**env, "PYTHON_ON_WORKERS": "/opt/py311/bin/python3"})
    assert r.returncode == 0, r.stderr
    assert git(worker, "rev-parse", "HEAD") == second
    assert install_log.read_text().splitlines()[1] == f"tpu PYTHON=/opt/py311/bin/python3 {second} {worker}"
    # an explicit older commit checks that commit out
    r = run("tpu_pod.sh", "setup", "my-tpu", "us-central2-b", str(src), first, env=env)
    assert r.returncode == 0, r.stderr
    assert git(worker, "rev-parse", "HEAD") == first


def test_tpu_pod_setup_defaults_to_this_checkouts_origin_and_head_and_refuses_an_unpushed_commit(pod):
    tmp_path, src, env, install_log, _ = pod
    local = tmp_path / "local"
    git(tmp_path, "clone", "-q", str(src), str(local))
    (local / "launch").mkdir()
    shutil.copy(LAUNCH / "tpu_pod.sh", local / "launch" / "tpu_pod.sh")  # untracked: HEAD stays src's
    head = git(local, "rev-parse", "HEAD")
    r = run(local / "launch" / "tpu_pod.sh", "setup", "my-tpu", "zone-a", env=env)
    assert r.returncode == 0, r.stderr
    assert git(tmp_path / "worker" / "mf", "rev-parse", "HEAD") == head
    assert f"{src} @ {head}" in r.stderr

    (local / "NEW").write_text("not pushed\n")
    git(local, "add", "NEW")
    git(local, "commit", "-q", "-m", "local only")
    unpushed = git(local, "rev-parse", "HEAD")
    r = run(local / "launch" / "tpu_pod.sh", "setup", "my-tpu", "zone-a", env=env)
    assert r.returncode == 2 and f"{unpushed} not found in {src} (pushed?)" in r.stderr, r.stderr
    assert len(install_log.read_text().splitlines()) == 1  # nothing installed for it


def test_tpu_pod_training_runs_the_trainer_with_the_extra_flags_quoted(tmp_path):
    log = tmp_path / "gcloud.log"
    fake_gcloud(tmp_path / "bin", log)
    # the stand-in runs the command; here only the command text matters, so make it harmless
    (tmp_path / "bin" / "gcloud").write_text((tmp_path / "bin" / "gcloud").read_text().replace(
        'sys.exit(subprocess.run(["/bin/sh", "-c", command]).returncode)', "sys.exit(0)"))
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    r = run("tpu_pod.sh", "my-tpu", "zone-a", "configs/sd15_stage2_video.py", "gs://b/w",
            "--config.train.num_steps=10", "--config.name=a b", env=env)
    assert r.returncode == 0, r.stderr
    command = json.loads(log.read_text().splitlines()[-1])[-1]
    assert command == ("cd ~/mimaface_jax && .venv/bin/python -m mimaface_jax.train --config "
                       "configs/sd15_stage2_video.py --workdir gs://b/w --config.train.num_steps=10 "
                       "--config.name=a\\ b")
    r = run("tpu_pod.sh", "my-tpu", "zone-a", "configs/x.py", "gs://b/w", env=env)
    assert json.loads(log.read_text().splitlines()[-1])[-1].endswith("--workdir gs://b/w")  # no empty argument


def test_install_stamps_cover_each_set_and_gpu_tpu_files_do_not_touch_the_cpu_sets(tmp_path):
    """install.sh in a copy of the repository's install files, with a stand-in .venv/bin/python
    that records the pip calls: which files each mode installs, which stamps it writes, and
    that an edit of gpu.txt re-installs the gpu set only."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install.sh", tmp_path / "scripts" / "install.sh")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    calls = tmp_path / "pip_calls.log"
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(calls))}\n')
    python.chmod(0o755)

    def install(mode):
        r = subprocess.run(["bash", str(tmp_path / "scripts" / "install.sh"), mode], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "PYTHON": "/bin/sh"})
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def stamps():
        return sorted(p.name.rsplit("-", 1)[-1] for p in (tmp_path / ".venv").glob(".mimaface-install-*"))

    assert install("gpu").startswith("installed (gpu)")
    assert "install -r requirements/gpu.txt" in calls.read_text()
    assert "install --no-deps -r requirements/mediapipe.txt" in calls.read_text()
    assert stamps() == ["gpu", "runtime"]
    assert install("gpu").startswith("already installed (gpu)")
    assert install("runtime").startswith("already installed (runtime)")

    with open(tmp_path / "requirements" / "gpu.txt", "a") as f:
        f.write("# edited\n")
    assert install("runtime").startswith("already installed (runtime)")  # CPU stamps ignore gpu.txt
    assert install("gpu").startswith("installed (gpu)")

    calls.write_text("")
    assert install("tpu").startswith("installed (tpu)")
    assert "install -r requirements/tpu.txt" in calls.read_text() and "gpu.txt" not in calls.read_text()
    assert stamps() == ["runtime", "tpu"]  # an install invalidates the other sets' stamps
