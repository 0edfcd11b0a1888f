"""AdamW with linear warmup + cosine decay and global-norm clipping, over the TRAINABLE params.

Which parameters train is decided per stage by regexes over the flat parameter names
(``optimizer.trainable``; "" = the stage's default below). The rest are frozen: they get no
gradient, no optimizer state, and are stored once in the train state's ``frozen`` dict.
"""

from __future__ import annotations

import re

import optax

from mimaface_jax.config_validation import ConfigError

# image stage: the U-Net and MIA (and CLIP when model.clip.trainable)
IMAGE_TRAINABLE = r"^(unet|mia)\."
IMAGE_TRAINABLE_WITH_CLIP = r"^(unet|mia|clip)\."
# video stage: the motion modules and the U-Net input conv (ICA's extra input channels)
VIDEO_TRAINABLE = r"^unet\.(.*\.)?motion_modules\.|^unet\.conv_in\."


def trainable_pattern(config) -> str:
    if config.optimizer.trainable:
        return config.optimizer.trainable
    if config.stage == "image":
        return IMAGE_TRAINABLE_WITH_CLIP if config.model.clip.trainable else IMAGE_TRAINABLE
    return VIDEO_TRAINABLE


def split_trainable(names, config) -> tuple[list[str], list[str]]:
    """(trainable names, frozen names); error if the pattern selects nothing."""
    pattern = trainable_pattern(config)
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"optimizer.trainable={pattern!r} is not a valid regex: {err}") from err
    trainable = [n for n in names if regex.search(n)]
    if not trainable:
        raise ConfigError(f"optimizer.trainable={pattern!r} (stage {config.stage!r}) selects no parameter; "
                         f"names look like {list(names)[:3]}")
    chosen = set(trainable)
    return trainable, [n for n in names if n not in chosen]


def learning_rate_schedule(config) -> optax.Schedule:
    o = config.optimizer
    decay = o.decay_steps or config.train.num_steps
    decay = max(decay, o.warmup_steps + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=o.learning_rate, warmup_steps=o.warmup_steps,
        decay_steps=decay, end_value=o.learning_rate * o.end_learning_rate_factor)


def make_optimizer(config) -> optax.GradientTransformation:
    """Clip by global norm, then AdamW (weight decay on kernels / tables of ndim >= 2 only)."""
    o = config.optimizer
    return optax.chain(
        optax.clip_by_global_norm(o.grad_clip_norm),
        optax.adamw(learning_rate_schedule(config), b1=o.b1, b2=o.b2, eps=o.eps,
                    weight_decay=o.weight_decay,
                    mask=lambda params: {k: v.ndim >= 2 for k, v in params.items()}),
    )
