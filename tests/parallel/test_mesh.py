"""Mesh construction from config: sizes, -1 resolution, validation errors."""

import jax
import pytest

from mimaface_jax.parallel import MESH_AXES, MeshConfig, make_mesh


@pytest.fixture(scope="module", autouse=True)
def eight_devices():
    assert jax.device_count() == 8, "tests/conftest.py should give 8 fake CPU devices"


def test_default_config_puts_all_devices_on_fsdp():
    mesh = make_mesh(MeshConfig())
    assert mesh.axis_names == MESH_AXES
    assert dict(mesh.shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    assert sorted(d.id for d in mesh.devices.flat) == list(range(8))


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (MeshConfig(data=2, fsdp=-1, tensor=1), (2, 4, 1)),
        (MeshConfig(data=-1, fsdp=2, tensor=2), (2, 2, 2)),
        (MeshConfig(data=2, fsdp=4, tensor=1), (2, 4, 1)),
        ({"data": 1, "fsdp": 1, "tensor": -1}, (1, 1, 8)),
    ],
)
def test_sizes_resolve(cfg, expected):
    mesh = make_mesh(cfg)
    assert tuple(mesh.shape[a] for a in MESH_AXES) == expected


def test_mapping_config_and_device_subset():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 1}, devices=jax.devices()[:4])
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 1}
    assert sorted(d.id for d in mesh.devices.flat) == [0, 1, 2, 3]


def test_axes_are_auto():
    mesh = make_mesh(MeshConfig(data=2, fsdp=4))
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (MeshConfig(data=2, fsdp=2, tensor=1), r"= 4 but there are 8 devices"),
        (MeshConfig(data=-1, fsdp=-1, tensor=1), r"only one axis may be -1"),
        (MeshConfig(data=3, fsdp=-1, tensor=1), r"multiply to 3, which does not divide the 8"),
        (MeshConfig(data=0, fsdp=-1, tensor=1), r"data=0 is not valid"),
        (MeshConfig(data=1, fsdp=-2, tensor=1), r"fsdp=-2 is not valid"),
        ({"data": 1, "tensor": -1}, r"only one axis may be -1"),
        ({"dp": 8}, r"unknown keys \['dp'\]"),
    ],
)
def test_invalid_configs_raise_clear_errors(cfg, message):
    with pytest.raises(ValueError, match=message):
        make_mesh(cfg)
