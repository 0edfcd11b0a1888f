"""Identity-disjoint split assignment: a deterministic hash of the speaker id.

``assign_split(speaker, fractions)`` maps ``sha256(speaker)`` to a number u in [0, 1) and
walks the splits in the order given: the first split whose cumulative fraction exceeds u
gets the speaker. Every video of a speaker therefore lands in one split, on every machine and
run, independent of the order or number of videos (no speaker in two splits).
"""

from __future__ import annotations

import hashlib
from typing import Mapping

DEFAULT_FRACTIONS = (("train", 0.9), ("validation", 0.05), ("test", 0.05))


def check_fractions(fractions) -> tuple[tuple[str, float], ...]:
    """Normalise ``{split: fraction}`` or ((split, fraction), ...) and check it sums to 1."""
    items = tuple(fractions.items()) if isinstance(fractions, Mapping) else tuple(
        (str(n), float(f)) for n, f in fractions)
    if not items:
        raise ValueError("split fractions are empty; give e.g. "
                         "(('train', 0.9), ('validation', 0.05), ('test', 0.05))")
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"split fractions name a split twice: {names}")
    if any(f < 0 for _, f in items):
        raise ValueError(f"split fractions must be >= 0, got {items}")
    total = sum(f for _, f in items)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {total} from {items}")
    return tuple((n, float(f)) for n, f in items)


def speaker_unit(speaker: str) -> float:
    """sha256 of the UTF-8 speaker id -> u in [0, 1) (first 8 bytes)."""
    if not speaker:
        raise ValueError("speaker id is empty; every video needs a speaker id for the split")
    digest = hashlib.sha256(speaker.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign_split(speaker: str, fractions=DEFAULT_FRACTIONS) -> str:
    items = check_fractions(fractions)
    u = speaker_unit(speaker)
    acc = 0.0
    for name, frac in items:
        acc += frac
        if u < acc:
            return name
    return [n for n, f in items if f > 0][-1]  # u within rounding of 1.0
