"""What the CPU benchmarks share: the repository root on sys.path, the CPU's name, core pinning."""

from __future__ import annotations

import os
import platform
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def use_repo() -> None:
    """Makes ``mimaface_jax`` importable when a script runs as ``python bench/x.py``."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def pin_to_core(core: int) -> None:
    """Pins this process (and the threads it starts later) to one CPU core."""
    os.sched_setaffinity(0, {core})
