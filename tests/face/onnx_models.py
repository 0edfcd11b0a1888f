"""Tiny ONNX models for identity tests (tests only): ArcFace-shaped and malformed ones."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph, path: str) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def tiny_arcface(path: str, size: int = 112, dim: int = 512, channels: int = 8,
                 seed: int = 0) -> str:
    """[N, 3, size, size] -> Conv(3->channels, 8x8 stride 8) -> Relu -> Flatten -> Gemm -> [N, dim].

    Flatten keeps spatial layout so different faces give different embeddings.
    """
    rng = np.random.default_rng(seed)
    cells = (size // 8) ** 2 * channels
    w_conv = rng.normal(0, 0.2, (channels, 3, 8, 8)).astype(np.float32)
    b_conv = rng.normal(0, 0.1, (channels,)).astype(np.float32)
    w_fc = rng.normal(0, 1.0 / np.sqrt(cells), (cells, dim)).astype(np.float32)
    b_fc = np.zeros((dim,), np.float32)
    nodes = [
        helper.make_node("Conv", ["input.1", "w_conv", "b_conv"], ["conv"],
                         name="Conv_0", kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Relu", ["conv"], ["relu"], name="Relu_1"),
        helper.make_node("Flatten", ["relu"], ["flat"], name="Flatten_2", axis=1),
        helper.make_node("Gemm", ["flat", "w_fc", "b_fc"], ["683"], name="Gemm_3"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", dim])],
        initializer=[numpy_helper.from_array(a, n) for a, n in
                     ((w_conv, "w_conv"), (b_conv, "b_conv"), (w_fc, "w_fc"), (b_fc, "b_fc"))])
    return _save(graph, path)


def two_output_model(path: str, size: int = 112) -> str:
    """ArcFace-sized input but two outputs (not an embedding model)."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["input.1"], ["pool"], name="Pool_0"),
        helper.make_node("Flatten", ["pool"], ["a"], name="Flatten_1", axis=1),
        helper.make_node("Neg", ["a"], ["b"], name="Neg_2"),
    ]
    graph = helper.make_graph(
        nodes, "two_outputs",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])])
    return _save(graph, path)
