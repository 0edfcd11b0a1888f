"""Multi-host on localhost: 2 processes x 2 CPU devices (jax.distributed with a local
coordinator) train ``tiny.py:image_min`` and match a 1-process run on 4 devices step by step;
the 2-process checkpoints restore in a 1-process run (onto another mesh) and equal the 1-process
run's state.
Mesh data=2 x fsdp=2: parameters sharded inside a host, gradients reduced across hosts (and the
global batch assembled from per-host shards)."""

import socket

import numpy as np

import runner
from mimaface_jax.training import checkpointing, mesh_and_model, optimizer, train_step

TOL = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process_and_checkpoints_restore(tmp_path, compile_cache, synth_dir):
    data = [f"--config.data.synth_dir={synth_dir}", "--config.mesh.data=2", "--config.mesh.fsdp=2",
            "--config.train.num_steps=6", "--config.checkpoint.every=3"]
    two, one = tmp_path / "two", tmp_path / "one"
    port = free_port()
    procs = [runner.start(runner.command(two, *data, extra_flags=[
        f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"]),
        compile_cache, devices=2, log_path=tmp_path / f"two_{i}.log") for i in range(2)]
    # the 1-process reference on 4 devices runs at the same time (the others wait on each other)
    single = runner.start(runner.command(one, *data), compile_cache, devices=4, log_path=tmp_path / "one.log")
    codes = [p.wait(timeout=480) for p in procs]
    assert codes == [0, 0], (tmp_path / "two_0.log").read_text()[-3000:] + (tmp_path / "two_1.log").read_text()[-3000:]
    log0 = (tmp_path / "two_0.log").read_text()
    assert "process 0/2, 2 local / 4 global devices" in log0
    assert "mesh {'data': 2, 'fsdp': 2, 'tensor': 1} over 4 devices (2 processes)" in log0

    assert single.wait(timeout=480) == 0, (tmp_path / "one.log").read_text()[-3000:]
    assert "over 4 devices (1 processes)" in (tmp_path / "one.log").read_text()
    l2, l1 = runner.losses(two), runner.losses(one)
    assert sorted(l2) == sorted(l1) == list(range(1, 7))
    worst = max(abs(l2[s] - l1[s]) for s in l1)
    assert worst <= TOL, (worst, l2, l1)

    # The 2-process checkpoints restore in one process (this one: 8 devices, another mesh) and
    # equal the 1-process run's state at the same step.
    c = runner.load_config("tiny", "image_min")
    mesh, rules = mesh_and_model.build_mesh(c)  # fsdp = 8
    model = mesh_and_model.abstract_model(c, mesh, rules)
    trainable, frozen = optimizer.split_trainable(model.spec.names, c)
    state_abs = train_step.abstract_state(c, model, trainable, frozen, optimizer.make_optimizer(c), mesh)
    with checkpointing.make_manager(checkpointing.checkpoint_dir(two), c) as manager:
        assert manager.all_steps() == [3, 6]
        state, data_state = checkpointing.restore(manager, 3, state_abs)
    assert data_state["next_batch"] == 3 and int(state["step"]) == 3
    reference = runner.load_state(one, 3)
    for part in ("trainable", "ema"):
        for name, value in state[part].items():
            assert value.sharding == state_abs[part][name].sharding
            np.testing.assert_allclose(np.asarray(value), reference[part][name], rtol=0, atol=TOL, err_msg=name)
