"""EMA of the trainable parameters: plain decay, and the warm-up that follows early updates."""

import numpy as np

from mimaface_jax.training.ema import ema_decay, ema_update


def test_warmup_decay_schedule_and_cap():
    got = [float(ema_decay(0.99, n, warmup=True)) for n in (0, 1, 8, 890, 5000)]
    expected = [min(0.99, (1 + n) / (10 + n)) for n in (0, 1, 8, 890, 5000)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0] == np.float32(0.1) and got[-1] == np.float32(0.99)
    assert float(ema_decay(0.99, 0, warmup=False)) == np.float32(0.99)


def test_ema_follows_the_recurrence():
    rng = np.random.default_rng(0)
    params = [{"w": rng.normal(size=(3, 2)).astype(np.float32)} for _ in range(30)]
    ema = {"w": np.zeros((3, 2), np.float32)}
    ref = np.zeros((3, 2), np.float64)
    for n, p in enumerate(params):
        ema = ema_update(ema, p, ema_decay(0.9, n, warmup=True))
        d = min(0.9, (1 + n) / (10 + n))
        ref = d * ref + (1 - d) * p["w"]
    np.testing.assert_allclose(np.asarray(ema["w"]), ref, atol=1e-6)
    # the zero start is forgotten: after 30 warm-up updates it weighs prod(d_n) < 1e-3
    assert np.prod([min(0.9, (1 + n) / (10 + n)) for n in range(30)]) < 1e-3
