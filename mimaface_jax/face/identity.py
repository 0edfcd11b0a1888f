"""ArcFace identity embeddings through insightface (onnxruntime, CPU provider).

The weights are the user's (an ArcFace ``.onnx`` path in the config); nothing is downloaded.
Crops come from ``align.arcface_crop`` as RGB uint8. insightface's ``ArcFaceONNX.get_feat``
expects BGR images and swaps them to RGB itself (``blobFromImages(swapRB=True)``), so
``embed`` passes the crops as BGR: the network sees RGB, normalised (x - 127.5) / 127.5.
"""

from __future__ import annotations

import os

import numpy as np


class IdentityModelError(ValueError):
    """An identity model file that is missing or not an ArcFace-shaped ONNX model."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"identity model {self.path}: {reason}")


def _dims(value_info) -> list:
    return [d.dim_value if d.dim_value > 0 else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def _check_arcface_graph(path: str) -> None:
    """Read the ONNX graph and say precisely why it is not ArcFace-shaped."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, OSError, ValueError) as err:
        raise IdentityModelError(path, f"not a readable ONNX model ({err.__class__.__name__})"
                                 ) from None
    init_names = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in init_names]
    outputs = list(model.graph.output)
    if len(inputs) != 1:
        raise IdentityModelError(path, f"expected 1 input [N, 3, S, S], found {len(inputs)}: "
                                       f"{[(v.name, _dims(v)) for v in inputs]}")
    shape = _dims(inputs[0])
    ok_input = (len(shape) == 4 and shape[1] == 3 and isinstance(shape[2], int)
                and shape[2] == shape[3] and shape[2] >= 112 and shape[2] % 16 == 0)
    if not ok_input:
        raise IdentityModelError(path, f"input {inputs[0].name!r} has shape {shape}; an ArcFace "
                                       "model takes [N, 3, S, S] with S >= 112, S % 16 == 0")
    if len(outputs) != 1:
        raise IdentityModelError(path, f"expected 1 output (the embedding), found "
                                       f"{len(outputs)}: {[(v.name, _dims(v)) for v in outputs]}")
    out_shape = _dims(outputs[0])
    if len(out_shape) != 2:
        raise IdentityModelError(path, f"output {outputs[0].name!r} has shape {out_shape}; "
                                       "expected [N, D]")


class ArcFaceEmbedder:
    """``embed((N, 112, 112, 3) RGB uint8) -> (N, D) float32``, rows L2-normalised."""

    def __init__(self, model_path: str | os.PathLike):
        path = str(model_path)
        if not os.path.exists(path):
            raise IdentityModelError(path, "file does not exist; set the ArcFace .onnx path")
        if not os.path.isfile(path):
            raise IdentityModelError(path, "is not a file")
        if not path.endswith(".onnx"):
            raise IdentityModelError(path, "expected a .onnx file")
        _check_arcface_graph(path)

        from insightface.model_zoo import get_model
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

        model = get_model(path, providers=["CPUExecutionProvider"])
        if not isinstance(model, ArcFaceONNX):
            raise IdentityModelError(path, f"insightface loads it as "
                                           f"{type(model).__name__}, not ArcFaceONNX")
        self.path = path
        self.model = model
        self.input_size = int(model.input_size[0])
        out_dim = model.output_shape[-1]
        self.dim = int(out_dim) if isinstance(out_dim, int) else None

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) or (112, 112, 3) RGB uint8 crops -> (N, D) unit-norm float32."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 crops (N, H, W, 3), got {crops.shape} "
                             f"{crops.dtype}")
        if len(crops) == 0:
            raise ValueError("embed got zero crops")
        bgr = [np.ascontiguousarray(c[:, :, ::-1]) for c in crops]  # insightface wants BGR
        feats = np.asarray(self.model.get_feat(bgr), np.float32).reshape(len(crops), -1)
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
            raise ValueError(f"{self.path}: embedding with zero or non-finite norm")
        return feats / norms
