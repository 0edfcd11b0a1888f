"""``python -m mimaface_jax.export``: what a bundle holds, and bundles that do not fit the code."""

import json
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest

from mimaface_jax import export as export_cli
from mimaface_jax.inference.bundle import BundleError, load_model

# one xdist worker builds the shared model / bundle fixture and compiles its generator once
pytestmark = pytest.mark.xdist_group("inference_facemesh_bundle")


def _saved_state(workdir, step):
    with ocp.StandardCheckpointer() as c:
        return c.restore(workdir / "checkpoints" / str(step) / "state")


def test_bundle_holds_the_ema_weights_basis_and_config_and_no_training_state(facemesh_bundle):
    bundle, workdir = facemesh_bundle
    doc = json.loads((bundle / "bundle.json").read_text())
    assert doc["format"] == "mimaface-inference-bundle" and doc["format_version"] == 1
    assert doc["step"] == 3 and doc["weights"] == "ema" and doc["has_expression_basis"]
    assert doc["motion_layout"]["version"] == "facemesh-v1-e4"
    assert doc["config"] == json.loads((workdir / "config.json").read_text())
    assert sorted(p.name for p in bundle.iterdir()) == ["bundle.json", "expression_basis.npz", "params"]
    with ocp.StandardCheckpointer() as c:
        params = c.restore(bundle / "params")
    state = _saved_state(workdir, 3)
    assert set(params) == set(state["frozen"]) | set(state["ema"])  # no optimizer / data state
    for name, value in state["ema"].items():
        np.testing.assert_array_equal(params[name], value)
    loaded = load_model(bundle, log=lambda _: None)
    assert loaded.description["kind"] == "bundle" and loaded.basis.num_components == 4
    name = next(iter(state["frozen"]))
    np.testing.assert_array_equal(np.asarray(loaded.params[name]), state["frozen"][name])


def test_export_cli_raw_weights_and_refusals(facemesh_bundle, tmp_path, capsys):
    _, workdir = facemesh_bundle
    out = tmp_path / "raw_bundle"
    assert export_cli.main(["--workdir", str(workdir), "--out", str(out), "--weights", "raw"]) == 0
    assert json.loads((out / "bundle.json").read_text())["weights"] == "raw"
    # an existing bundle is not overwritten; a folder without checkpoints is no run
    assert export_cli.main(["--workdir", str(workdir), "--out", str(out)]) == 1
    assert str(out) in capsys.readouterr().err
    assert export_cli.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "b2")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json" in err[0] and not (tmp_path / "b2").exists()
    assert export_cli.main(["--workdir", str(workdir), "--out", str(tmp_path / "b3"), "--step", "7"]) == 1
    assert "step 7" in capsys.readouterr().err and not (tmp_path / "b3").exists()


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["model"]["unet"].update(extra_width=3), "model.unet.extra_width"),
    (lambda c: c["model"]["mia"].pop("motion_hidden"), "model.mia.motion_hidden"),
])
def test_a_bundle_whose_model_config_does_not_match_the_code_names_the_key(facemesh_bundle, tmp_path, edit, key):
    bundle, _ = facemesh_bundle
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    doc = json.loads((copy / "bundle.json").read_text())
    edit(doc["config"])
    (copy / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=key.replace(".", r"\.")):
        load_model(copy, log=lambda _: None)


def test_a_bundle_whose_weights_do_not_fit_its_config_names_the_parameter(facemesh_bundle, tmp_path):
    bundle, _ = facemesh_bundle
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    doc = json.loads((copy / "bundle.json").read_text())
    doc["config"]["model"]["mia"]["motion_hidden"] = 12  # the stored MIA weights are 8 wide
    (copy / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"parameter 'mia\..*' has shape"):
        load_model(copy, log=lambda _: None)
