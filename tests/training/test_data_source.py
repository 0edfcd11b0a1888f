"""data.source='tfds': the grain pipeline over a SynthFaces TFDS build gives train-step batches
(keys, shapes, dtypes of ``train_step.batch_shapes``; the identity code of the clip's person) and
its saved state resumes the exact stream in a new iterator."""

import numpy as np

import runner
from mimaface_jax.data.synth_faces import SynthFaces
from mimaface_jax.training import data_source, synth_source, train_step


def tfds_config(variant, data_dir):
    c = runner.load_config("tiny", variant)
    c.data.source = "tfds"
    c.data.tfds_data_dir = str(data_dir)
    c.data.mixture = "synth_faces=1"
    return c


def test_tfds_batches_match_the_step_and_resume_exactly(synth_tfds):
    for variant in ("image_min", "video_min"):
        c = tfds_config(variant, synth_tfds)
        it = data_source.make_train_iterator(c, log=lambda _: None)
        want = train_step.batch_shapes(c)
        first = next(it)
        assert sorted(first) == sorted(want)
        for k, spec in want.items():
            assert first[k].shape == spec.shape and first[k].dtype == spec.dtype, (variant, k, first[k].shape)
        people = SynthFaces(synth_source.synth_faces_config(c))
        codes = np.stack([people.identity(int(i)).identity_code for i in people.identity_ids("train")])
        for row in first["identity"]:
            assert np.abs(codes - row).max(axis=1).min() < 1e-6  # one of the train people, exactly

        state = it.get_state()
        expected = [next(it) for _ in range(2)]
        again = data_source.make_train_iterator(c, log=lambda _: None)
        again.set_state(state)
        for a, b in zip(expected, [next(again) for _ in range(2)]):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert any(not np.array_equal(expected[0][k], expected[1][k]) for k in ("frames", "motion"))


def test_unknown_dataset_name_says_where_it_looked(synth_tfds):
    c = tfds_config("image_min", synth_tfds)
    c.data.mixture = "voxceleb2=1"
    try:
        data_source.make_train_iterator(c, log=lambda _: None)
    except data_source.DataConfigError as err:
        assert "data.mixture has 'voxceleb2'" in str(err) and str(synth_tfds) in str(err)
    else:
        raise AssertionError("no error for a dataset that is not there")


def test_motion_layout_of_the_data_must_match_the_model(synth_tfds):
    c = tfds_config("image_min", synth_tfds)
    c.model.mia.motion_layout = "facemesh"
    try:
        data_source.make_train_iterator(c, log=lambda _: None)
    except data_source.DataConfigError as err:
        text = str(err)
        assert "layout 'synth-v1'" in text and "model.mia.motion_layout='facemesh'" in text, text
    else:
        raise AssertionError("no error for a dataset whose motion layout the model does not read")
