"""Inference: the clip-by-clip generator, inference bundles, and the parts of ``animate``."""
