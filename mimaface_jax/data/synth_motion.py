"""SynthFaces motion: the motion-vector layout and smooth random talking-head motion.

Sign conventions (image axes: x to the right, y down; a horizontal flip mirrors x):
- ``yaw`` (degrees) > 0 turns the face towards the image's +x side: features shift right.
- ``pitch`` (degrees) > 0 tilts the chin up: features shift up (towards -y).
- ``roll`` (degrees) > 0 rotates the head counter-clockwise as seen on screen.
- ``translation`` (x, y): head-centre offset from its rest position in units of the image
  width / height.
- ``log_scale``: log of the head-size factor (camera zoom about the head centre).
- ``mouth_open``, ``smile``, ``brows`` (raise), ``blink`` (1 = closed): 0..1, symmetric.
- ``gaze``: (x, y) of the iris of the image-left eye then of the image-right eye, in units of
  the eye's half-width / half-height (+x right, +y down), about -1..1.
"""

from __future__ import annotations

import numpy as np

from mimaface_jax.face.motion_layout import MotionField, MotionLayout

SYNTH_LAYOUT_VERSION = "synth-v1"

# Fixed seed-sequence tags so that identity and motion streams never collide.
MOTION_STREAM = 2


def synth_layout() -> MotionLayout:
    """The SynthFaces motion layout (pose field names equal to ``facemesh_layout``'s)."""
    return MotionLayout(
        version=SYNTH_LAYOUT_VERSION,
        fields=(
            MotionField("yaw", 1, "pose", flip_sign=(-1.0,)),
            MotionField("pitch", 1, "pose"),
            MotionField("roll", 1, "pose", flip_sign=(-1.0,)),
            MotionField("translation", 2, "pose", flip_sign=(-1.0, 1.0)),
            MotionField("log_scale", 1, "pose"),
            MotionField("mouth_open", 1, "expression"),
            MotionField("smile", 1, "expression"),
            MotionField("brows", 1, "expression"),
            MotionField("blink", 1, "expression"),
            MotionField("gaze", 4, "gaze", flip_sign=(-1.0, 1.0, -1.0, 1.0),
                        flip_perm=(2, 3, 0, 1)),
        ),
    )


# Index of every scalar of the vector (the layout above, unrolled once for fast unpacking).
YAW, PITCH, ROLL, TX, TY, LOG_SCALE, MOUTH_OPEN, SMILE, BROWS, BLINK = range(10)
GAZE = slice(10, 14)
MOTION_SIZE = 14

# Realistic ranges (low, high) of each scalar; motion sequences are clipped to them.
RANGES = np.array([
    (-30.0, 30.0), (-20.0, 20.0), (-15.0, 15.0),     # yaw, pitch, roll (degrees)
    (-0.08, 0.08), (-0.06, 0.06), (-0.15, 0.15),     # translation x, y, log_scale
    (0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (0.0, 1.0),  # mouth_open, smile, brows, blink
    (-0.8, 0.8), (-0.6, 0.6), (-0.8, 0.8), (-0.6, 0.6),  # gaze
], np.float32)


def neutral_motion() -> np.ndarray:
    """Frontal, centred, mouth closed, eyes open and looking ahead. (14,) float32."""
    return np.zeros((MOTION_SIZE,), np.float32)


def make_motion(**values) -> np.ndarray:
    """A motion vector from named fields (missing ones neutral), e.g. ``make_motion(yaw=20)``."""
    layout = synth_layout()
    parts = layout.split(neutral_motion())
    parts = {k: np.array(v, np.float32) for k, v in parts.items()}
    for name, value in values.items():
        if name not in parts:
            raise KeyError(f"make_motion: unknown field {name!r}; fields: {layout.names}")
        value = np.atleast_1d(np.asarray(value, np.float32))
        if value.shape != parts[name].shape:
            raise ValueError(f"make_motion: field {name!r} needs {parts[name].size} values, "
                             f"got {value.size}")
        parts[name] = value
    return layout.join(parts)


def _sinusoids(rng: np.random.Generator, t: np.ndarray, freqs: tuple[float, float],
               count: int) -> np.ndarray:
    """A sum of ``count`` random sinusoids with unit total amplitude. (T,)"""
    f = rng.uniform(*freqs, size=count)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=count)
    amp = rng.uniform(0.3, 1.0, size=count)
    amp = amp / amp.sum()
    return (amp[:, None] * np.sin(2.0 * np.pi * f[:, None] * t[None] + phase[:, None])).sum(0)


def _blinks(rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """Blink events every 1.5-4.5 s, each a smooth 0 -> 1 -> 0 bump of ~0.25 s. (T,)"""
    t = np.arange(num_frames) / fps
    out = np.zeros((num_frames,), np.float64)
    start = rng.uniform(0.0, 3.0)
    while start < t[-1] + 1.0:
        duration = rng.uniform(0.2, 0.32)
        phase = (t - start) / duration
        inside = (phase > 0.0) & (phase < 1.0)
        out = np.maximum(out, np.where(inside, np.sin(np.pi * np.clip(phase, 0, 1)) ** 2, 0.0))
        start += duration + rng.uniform(1.5, 4.5)
    return out


def _fixations(rng: np.random.Generator, num_frames: int, fps: float,
               limit: float) -> np.ndarray:
    """Gaze: fixations held 0.4-2 s joined by fast (2-frame time constant) saccades. (T,)"""
    target = np.zeros((num_frames,), np.float64)
    frame = 0
    while frame < num_frames:
        hold = max(1, int(round(rng.uniform(0.4, 2.0) * fps)))
        target[frame:frame + hold] = rng.uniform(-limit, limit)
        frame += hold
    out = np.empty_like(target)
    value = target[0]
    for i, goal in enumerate(target):
        value += (goal - value) * 0.5
        out[i] = value
    return out


def sample_motion(rng: np.random.Generator, num_frames: int, fps: float = 25.0) -> np.ndarray:
    """A smooth random talking-head motion sequence. (T, 14) float32 in ``synth_layout``.

    Pose: a random offset plus a sum of slow sinusoids (0.05-0.5 Hz); mouth: syllable-rate
    (2-5 Hz) opening gated by a slow speaking envelope; smile / brows: slow drifts; blinks:
    discrete events; gaze: fixations and saccades shared by both eyes plus a small vergence.
    """
    if num_frames <= 0:
        raise ValueError(f"sample_motion: num_frames must be positive, got {num_frames}")
    t = np.arange(num_frames, dtype=np.float64) / fps
    m = np.zeros((num_frames, MOTION_SIZE), np.float64)
    # (offset range, sinusoid amplitude range, frequency band) per pose scalar.
    pose = {YAW: (12.0, (6.0, 20.0), (0.05, 0.5)), PITCH: (6.0, (3.0, 12.0), (0.05, 0.5)),
            ROLL: (5.0, (2.0, 9.0), (0.05, 0.4)), TX: (0.03, (0.005, 0.04), (0.03, 0.3)),
            TY: (0.02, (0.005, 0.03), (0.03, 0.3)), LOG_SCALE: (0.07, (0.01, 0.07), (0.03, 0.2))}
    for index, (offset, amp, band) in pose.items():
        m[:, index] = rng.uniform(-offset, offset) + rng.uniform(*amp) * _sinusoids(
            rng, t, band, 3)
    envelope = np.clip(0.6 + 0.8 * _sinusoids(rng, t, (0.1, 0.5), 2), 0.0, 1.0)
    syllables = 0.5 + 0.5 * _sinusoids(rng, t, (2.0, 5.0), 3)
    m[:, MOUTH_OPEN] = envelope * np.clip(1.4 * syllables - 0.2, 0.0, 1.0)
    m[:, SMILE] = rng.uniform(0.0, 0.6) + rng.uniform(0.1, 0.4) * _sinusoids(rng, t, (0.05, 0.3), 2)
    m[:, BROWS] = rng.uniform(0.1, 0.5) + rng.uniform(0.1, 0.4) * _sinusoids(rng, t, (0.1, 0.6), 2)
    m[:, BLINK] = _blinks(rng, num_frames, fps)
    gaze_x = _fixations(rng, num_frames, fps, 0.6)
    gaze_y = _fixations(rng, num_frames, fps, 0.4)
    vergence = rng.uniform(-0.05, 0.05)
    m[:, GAZE] = np.stack([gaze_x + vergence, gaze_y, gaze_x - vergence, gaze_y], axis=1)
    return np.clip(m, RANGES[:, 0], RANGES[:, 1]).astype(np.float32)
