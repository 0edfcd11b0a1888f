"""XLA flags of every test process (in-process tests and the trainer subprocesses).

The CPU backend's optimisation is turned down: compiling is most of the suite's time and gets
~3x shorter; results differ from an optimised build only in float rounding (the comparisons of
a test run under the same flags; parity tolerances are >= 1e-6).
"""

FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def flags(devices: int) -> str:
    return f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"
