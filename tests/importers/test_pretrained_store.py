import jax
import numpy as np
import pytest
from flax import nnx

from mimaface_jax.importers.pretrained_store import (PretrainedStoreError, read_meta,
                                                     restore_component, write_pretrained)


def _model(seed):
    return nnx.Sequential(nnx.Linear(3, 5, rngs=nnx.Rngs(seed)), nnx.Linear(5, 2, rngs=nnx.Rngs(seed + 1)))


def test_round_trip_is_bit_identical(tmp_path):
    a, b = _model(0), _model(10)
    out = write_pretrained(tmp_path / "pre", {"a": nnx.state(a, nnx.Param), "b": nnx.state(b, nnx.Param)},
                           {"configs": {"a": {"width": 5}}})
    meta = read_meta(out)
    assert meta["components"] == ["a", "b"] and meta["configs"]["a"]["width"] == 5
    abstract = nnx.state(nnx.eval_shape(lambda: _model(99)), nnx.Param)
    restored = restore_component(out, "b", abstract)
    for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(nnx.state(b, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # nothing but the finished checkpoint is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pre"]


def test_existing_output_is_never_overwritten(tmp_path):
    out = tmp_path / "pre"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PretrainedStoreError, match="already exists"):
        write_pretrained(out, {"a": nnx.state(_model(0), nnx.Param)}, {})
    assert (out / "keep.txt").read_text() == "mine"


def test_unknown_component_and_non_checkpoint_are_named(tmp_path):
    out = write_pretrained(tmp_path / "pre", {"a": nnx.state(_model(0), nnx.Param)}, {})
    with pytest.raises(PretrainedStoreError, match="no component 'vae'"):
        restore_component(out, "vae", nnx.state(_model(0), nnx.Param))
    with pytest.raises(PretrainedStoreError, match="not a pretrained checkpoint"):
        read_meta(tmp_path)
