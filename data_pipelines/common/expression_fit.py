"""Fit the expression PCA basis on a written split (the builders' post-pass).

Reads the split's ArrayRecord files, turns every frame with a tracked face into its expression
offset (canonical shape minus the video's neutral shape, ``face/expression.py``) and fits
``ExpressionPCA``. Records are read with a stride so that at most ``max_frames`` frames are used
(deterministic: the same files give the same basis).
"""

from __future__ import annotations

import numpy as np

from mimaface_jax.face import expression as expression_lib


def fit_basis_from_split(features, filepaths, num_components: int, max_frames: int,
                         source: str = "dataset") -> expression_lib.ExpressionPCA:
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    paths = [str(p) for p in filepaths]
    if not paths:
        raise ValueError(f"{source}: the train split has no files to fit the expression basis")
    data = ArrayRecordDataSource(paths)
    n = len(data)
    first = features.deserialize_example_np(data[0])
    per_record = max(1, len(first["landmarks"]))
    stride = max(1, int(np.ceil(n * per_record / max(1, max_frames))))
    offsets = []
    for index in range(0, n, stride):
        ex = features.deserialize_example_np(data[index])
        found = np.asarray(ex["face_found"], bool)
        if not found.any():
            continue
        shapes = expression_lib.canonical_shapes(ex["landmarks"][found])
        offsets.append(expression_lib.expression_offsets(shapes, ex["neutral_shape"]))
    if not offsets:
        raise ValueError(f"{source}: no train frame has a tracked face; cannot fit the "
                         "expression basis")
    offsets = np.concatenate(offsets)[:max_frames]
    try:
        return expression_lib.ExpressionPCA.fit(offsets, num_components)
    except ValueError as err:
        raise ValueError(f"{source}: fitting the expression basis on the train split "
                         f"({len(offsets)} frames) failed: {err}. Build with a smaller "
                         "num_expression or more training videos.") from err
