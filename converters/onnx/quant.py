"""ONNX recipes on top of the fp32 export, each made by ONNX Runtime's own tools."""

from __future__ import annotations

import heapq
import logging
from pathlib import Path
from typing import Any

import numpy as np

from converters.base import VariantSkipped

log = logging.getLogger(__name__)


def topologically_sort(graph: Any) -> None:
    """Reorder `graph.node` in place so every node comes after the producers of its inputs (Kahn's
    algorithm, stable: ready nodes keep their original order). ONNX requires it and `onnx.checker` with
    `full_check` rejects a graph without it; ONNX Runtime's fp16 converter inserts its input casts at the
    end of the node list."""
    nodes = list(graph.node)
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producer = {output: index for index, node in enumerate(nodes) for output in node.output}
    waiting_on = [{name for name in node.input if name not in available and name in producer} for node in nodes]
    consumers: dict[int, list[int]] = {}
    for index, needs in enumerate(waiting_on):
        for name in needs:
            consumers.setdefault(producer[name], []).append(index)
    pending = [len({producer[name] for name in needs}) for needs in waiting_on]
    ready = [index for index, count in enumerate(pending) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for consumer in sorted(set(consumers.get(index, []))):
            pending[consumer] -= 1
            if pending[consumer] == 0:
                heapq.heappush(ready, consumer)
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle; it cannot be sorted")
    del graph.node[:]
    graph.node.extend(nodes[index] for index in order)


def to_fp16(source: Path, target: Path) -> None:
    """fp16 weights and compute; fp32 inputs and outputs kept so callers feed the same arrays."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    topologically_sort(model.graph)
    onnx.save(model, str(target))


def preprocessed(source: Path, scratch: Path) -> Path:
    """ONNX Runtime's quantization pre-processing, once per model (graphs under protobuf's 2 GB limit).
    Its symbolic shape inference fails on some exported graphs (an Expand in BERT's attention mask);
    then ONNX's own shape inference is used."""
    import onnx
    from onnxruntime.quantization import quant_pre_process

    pre = scratch / "preprocessed.onnx"
    if not pre.exists():
        inline = scratch / "inline.onnx"  # one file: the pre-processor's temp copies lose a side data file
        onnx.save(onnx.load(str(source)), str(inline))
        try:
            quant_pre_process(str(inline), str(pre))
        except Exception:  # the symbolic inference raises what its failing op raises: any type
            log.warning("symbolic shape inference failed; pre-processing with ONNX's own", exc_info=True)
            quant_pre_process(str(inline), str(pre), skip_symbolic_shape=True)
    return pre


def int8_dynamic(source: Path, target: Path, scratch: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(preprocessed(source, scratch)), str(target), weight_type=QuantType.QInt8)


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over the profile's calibration arrays, one row a call."""

    def __init__(self, names: list[str], arrays: tuple[Any, ...]) -> None:
        self.rows = [
            {n: np.ascontiguousarray(x[i : i + 1]) for n, x in zip(names, arrays, strict=True)}
            for i in range(len(arrays[0]))
        ]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.rows):
            return None
        self.position += 1
        return self.rows[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def int8_static(
    source: Path, target: Path, scratch: Path, names: list[str], calibration: tuple[Any, ...], per_channel: bool
) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if not calibration:
        raise VariantSkipped("no calibration inputs (convert.calibration_samples must be >= 1)")
    quantize_static(
        str(preprocessed(source, scratch)),
        str(target),
        _Calibration(names, calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )


COMPUTE_OPS = ("MatMul", "Gemm", "Conv")


def matmul_weight_share(model: Any) -> float:
    """Of the weights that compute ops (MatMul, Gemm, Conv) multiply by, the fraction MatMul holds.
    Lookup tables (an embedding's Gather) are left out: 4-bit MatMul quantization is about the weights
    that are multiplied."""
    from onnx import numpy_helper

    sizes = {init.name: numpy_helper.to_array(init).nbytes for init in model.graph.initializer}
    by_op: dict[str, set[str]] = {op: set() for op in COMPUTE_OPS}
    for node in model.graph.node:
        if node.op_type in by_op and len(node.input) > 1:
            by_op[node.op_type].add(node.input[1])
    compute = sum(sizes.get(name, 0) for names in by_op.values() for name in names) or 1
    return sum(sizes.get(name, 0) for name in by_op["MatMul"]) / compute


def matmul_4bit(source: Path, target: Path, block_size: int, min_share: float) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(source))
    share = matmul_weight_share(model)
    if share < min_share:
        raise VariantSkipped(
            f"only {share:.0%} of the multiplied weights feed MatMul (the rest are Conv/Gemm); "
            f"onnx-w4 is for models whose weight mass is in MatMul (>= {min_share:.0%})",
            about_model=True,
        )
    quantizer = MatMulNBitsQuantizer(model, block_size=block_size, is_symmetric=True)
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), True)
