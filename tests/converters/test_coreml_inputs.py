"""Core ML inputs in the spec's dtypes: token ids reach predict as int32, never int64 or FLOAT16."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from converters.base import ConversionContext
from converters.build import build_artifact
from converters.cache import ArtifactCache
from converters.coreml.convert import convert_exported, convert_traced
from converters.coreml.inputs import cast_to_spec, spec_input_dtypes
from converters.fingerprint import Fingerprint
from harness.backends.base import LoadRequest
from harness.backends.coreml import CoreMLBackend
from profiles.catalog import VARIANTS
from profiles.zoo import LoadedModel

VOCABULARY = 4000  # ids above 2048, which FLOAT16 cannot hold exactly


class Embedder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCABULARY, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids).mean(1)


def embedder() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(Embedder().eval(), (torch.tensor([[1, 2049, 3999]], dtype=torch.int64),))


@pytest.fixture(scope="module")
def ct() -> Any:
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools

    return coremltools


def _common(ct: Any) -> dict[str, Any]:
    return {"convert_to": "mlprogram", "minimum_deployment_target": ct.target.iOS16}


def _exported(ct: Any, model: LoadedModel, common: dict[str, Any]) -> Any:
    return convert_exported(ct, model, common, ConversionContext())


@pytest.mark.parametrize("convert", [_exported, convert_traced], ids=["torch.export", "torch.jit.trace"])
def test_integer_inputs_are_declared_int32_on_both_paths(ct: Any, convert: Any) -> None:
    spec = convert(ct, embedder(), _common(ct)).get_spec()
    data_type = spec.description.input[0].type.multiArrayType.dataType
    assert ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(data_type) == "INT32"
    assert spec_input_dtypes(spec) == {spec.description.input[0].name: np.dtype(np.int32)}


def test_int64_token_ids_are_cast_to_the_declared_int32(ct: Any) -> None:
    spec = _exported(ct, embedder(), _common(ct)).get_spec()
    ids = np.array([[1, 2049, 3999]], dtype=np.int64)
    fed = cast_to_spec({"ids": ids}, spec_input_dtypes(spec))  # torch.export names it after forward's argument
    assert fed["ids"].dtype == np.int32 and fed["ids"].tolist() == ids.tolist()
    with pytest.raises(ValueError, match="outside int32"):
        cast_to_spec({"ids": np.array([[1 << 40]])}, spec_input_dtypes(spec))


def test_float_inputs_follow_the_declared_precision(ct: Any) -> None:
    model = LoadedModel(torch.nn.Linear(4, 2).eval(), (torch.ones(1, 4),))
    fp16_io = _exported(ct, model, {**_common(ct), "inputs": [ct.TensorType(dtype=np.float16)]}).get_spec()
    declared = fp16_io.description.input[0].type.multiArrayType.dataType
    assert ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(declared) == "FLOAT16"
    assert spec_input_dtypes(fp16_io) == {"input": np.dtype(np.float32)}  # predict takes no float16
    fp32 = _exported(ct, model, _common(ct)).get_spec()
    fed = cast_to_spec({"input": np.ones((1, 4), np.float64)}, spec_input_dtypes(fp32))
    assert fed["input"].dtype == np.float32


@pytest.mark.skipif(sys.platform != "darwin", reason="requires macOS (Core ML prediction)")
def test_coreml_predicts_on_int64_token_ids(tmp_path: Path) -> None:
    model = embedder()
    info = build_artifact(
        model, Fingerprint("ids"), VARIANTS["coreml-fp32"], ConversionContext(), ArtifactCache(tmp_path)
    )
    backend = CoreMLBackend()
    request = LoadRequest(info["path"], "cpu", 1, "unused")
    backend.prepare(request)
    try:
        out = backend.load(request).run([np.array([[1, 2049, 3999]], dtype=np.int64)])
    finally:
        backend.close()
    expected = model.module(model.example_inputs[0]).detach().numpy()
    assert np.allclose(out[0], expected, atol=1e-4)


def test_int8_inputs_are_fed_as_int32(ct: Any) -> None:
    """predict converts int8 arrays only in a macOS 26 SDK build of coremltools: an INT8 input gets int32."""
    spec = ct.proto.Model_pb2.Model()
    feature = spec.description.input.add()
    feature.name = "codes"
    feature.type.multiArrayType.dataType = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Value("INT8")
    feature.type.multiArrayType.shape.extend([1, 3])
    dtypes = spec_input_dtypes(spec)
    assert dtypes == {"codes": np.dtype(np.int32)}
    fed = cast_to_spec({"codes": np.array([[-128, 0, 127]], np.int8)}, dtypes)
    assert fed["codes"].dtype == np.int32 and fed["codes"].tolist() == [[-128, 0, 127]]
