"""A model's own image embedding: its head's inputs, average-pooled, from its ONNX.

An Ultralytics export names its nodes `/model.<layer>/...`, and the last layer is
the task's head (Detect, Segment, Classify). The tensors the head reads are the
model's features of the image at their richest; pooled over space and joined
they are a vector that moves when the images move, with no other weights. The
embedding graph is the export cut at those tensors, so it runs the backbone and
neck only, on the very blob the task's predictor feeds its graph.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

LAYER = re.compile(r"^/model\.(\d+)/")
OUTPUT = "visionops_embedding"
# Blobs are shrunk to at most this side (a multiple of the largest stride, 32)
# before embedding: pooled features need no detail, and the backbone's cost
# falls with the pixels (at 640 px it is half a prediction).
EMBED_SIDE = 256
STRIDE = 32


def _layer(node: object) -> int | None:
    """The Ultralytics layer a node belongs to, from its name or first output."""
    for name in (node.name, *node.output[:1]):  # type: ignore[attr-defined]
        match = LAYER.match(name)
        if match:
            return int(match.group(1))
    return None


def head_inputs(model: object) -> list[str]:
    """The tensors the last layer (the head) reads from the layers before it.

    Raises:
        ValueError: The graph's nodes carry no Ultralytics layer names.
    """
    graph = model.graph  # type: ignore[attr-defined]
    layers = [_layer(node) for node in graph.node]
    known = [layer for layer in layers if layer is not None]
    if not known:
        raise ValueError("the ONNX graph has no /model.<n>/ nodes (not a YOLO export)")
    head = max(known)
    # Activations only: what depends on the image (in an INT8 export, a weight's
    # DequantizeLinear and a shared constant feed the head too).
    from_image = {i.name for i in graph.input}
    for node in graph.node:  # topological order
        if any(name in from_image for name in node.input):
            from_image.update(node.output)
    produced_by_head = {
        out
        for node, layer in zip(graph.node, layers, strict=True)
        if layer == head
        for out in node.output
    }
    found: list[str] = []
    for node, layer in zip(graph.node, layers, strict=True):
        if layer != head:
            continue
        for name in node.input:
            outside = name in from_image and name not in produced_by_head
            if outside and name not in found:
                found.append(name)
    return found


def embedding_graph(onnx_path: Path) -> bytes:
    """The export cut at its head's inputs, each pooled, joined into one output.

    Returns:
        The serialized model: input as the export's, output `visionops_embedding`
        of shape (batch, channels summed over the head's inputs).
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    features = [n for n in head_inputs(model) if n not in {i.name for i in graph.input}]
    # Keep only the nodes the features depend on: the head never runs.
    producers = {out: node for node in graph.node for out in node.output}
    needed, stack = set(), list(features)
    while stack:
        node = producers.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(node.input)
    nodes = [node for node in graph.node if id(node) in needed]
    pooled = []
    for i, name in enumerate(features):
        nodes.append(helper.make_node("GlobalAveragePool", [name], [f"_gap{i}"]))
        nodes.append(helper.make_node("Flatten", [f"_gap{i}"], [f"_flat{i}"], axis=1))
        pooled.append(f"_flat{i}")
    nodes.append(helper.make_node("Concat", pooled, [OUTPUT], axis=1))
    used = {name for node in nodes for name in node.input}
    cut = helper.make_graph(
        nodes,
        "embedding",
        list(graph.input),
        [helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, None)],
        initializer=[i for i in graph.initializer if i.name in used],
    )
    out = helper.make_model(cut, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out.SerializeToString()


class Embedder:
    """Runs a model's embedding graph (`embedding_graph`) on its predictor's blobs.

    Attributes:
        size: The embedding's length.
    """

    def __init__(self, onnx_path: Path, threads: int = 1) -> None:
        """Cuts the export and opens the cut graph on the CPU."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            embedding_graph(Path(onnx_path)),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.dynamic = not all(isinstance(d, int) for d in graph_input.shape[2:])
        self.size: int | None = None

    def embed(self, blobs: Sequence[np.ndarray]) -> np.ndarray:
        """The embeddings of (1, 3, h, w) input blobs (a predictor's `preprocess`),
        each shrunk to `EMBED_SIDE` first when larger (`shrink`).

        Returns:
            A (len(blobs), size) float32 array.
        """
        rows = [
            self.session.run([OUTPUT], {self.input_name: self.shrink(blob)})[0][0]
            for blob in blobs
        ]
        found = np.asarray(rows, np.float32).reshape(len(rows), -1)
        self.size = found.shape[1]
        return found

    def shrink(self, blob: np.ndarray) -> np.ndarray:
        """A (1, 3, h, w) blob fitted into `EMBED_SIDE`, sides kept multiples of
        `STRIDE` (bilinear); a fixed-size graph's blobs stay as they are."""
        if not self.dynamic:
            return blob
        height, width = blob.shape[2:]
        scale = EMBED_SIDE / max(height, width)
        if scale >= 1:
            return blob
        size = (
            max(STRIDE, round(width * scale / STRIDE) * STRIDE),
            max(STRIDE, round(height * scale / STRIDE) * STRIDE),
        )
        image = cv2.resize(
            blob[0].transpose(1, 2, 0), size, interpolation=cv2.INTER_AREA
        )
        return np.ascontiguousarray(image.transpose(2, 0, 1)[None])
