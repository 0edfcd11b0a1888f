"""mimaface_jax: MIMAFace-style diffusion face animation in JAX / Flax NNX."""

__version__ = "0.1.0"
