"""training: the pieces of ``python -m mimaface_jax.train`` (mesh + model, optimizer, EMA,
AOT train step, checkpoints, signals, metrics, samples, multi-host set-up, the loop)."""
