"""Core ML inputs in the dtypes a model's spec declares.

Core ML's Python `predict` accepts float32, float64 and int32 arrays; an int64 array, as a tokenizer
hands out token ids, raises `value type not convertible`. So every array fed to a Core ML model (a timed
predict or a calibration sample) is cast to the type predict takes for its input's declared type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# multiArrayType.dataType name -> the numpy dtype predict accepts for it. A FLOAT16 input is fed as
# float32: predict would convert a float16 array to float32 on every call, and Core ML rounds it anyway.
# An INT8 input is fed as int32: coremltools' predict converts int8 arrays only when built with the
# macOS 26 SDK (coremlpython/CoreMLPythonArray.mm), and the installed package exposes no flag saying
# which SDK built it, so int32 is the type every build takes.
PREDICT_DTYPES: dict[str, type[np.generic]] = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float32,
    "DOUBLE": np.float64,
    "INT32": np.int32,
    "INT8": np.int32,
}


def spec_input_dtypes(spec: Any) -> dict[str, np.dtype | None]:
    """Each input's predict dtype from a Core ML spec (`Model_pb2.Model`), None for a non-array input."""
    from coremltools.proto import FeatureTypes_pb2

    names = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    dtypes: dict[str, np.dtype | None] = {}
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") != "multiArrayType":
            dtypes[feature.name] = None
            continue
        name = names.Name(feature.type.multiArrayType.dataType)
        if name not in PREDICT_DTYPES:
            raise ValueError(f"Core ML input '{feature.name}' has data type {name}, which predict does not take")
        dtypes[feature.name] = np.dtype(PREDICT_DTYPES[name])
    return dtypes


def cast_to_spec(arrays: Mapping[str, np.ndarray], dtypes: Mapping[str, np.dtype | None]) -> dict[str, np.ndarray]:
    """The arrays, contiguous, in their input's declared dtype; an integer that the narrower type cannot
    hold raises rather than wraps."""
    cast: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        dtype = dtypes.get(name)
        if dtype is not None and array.dtype != dtype:
            if np.issubdtype(dtype, np.integer) and array.size:
                limits = np.iinfo(dtype)
                if array.min() < limits.min or array.max() > limits.max:
                    raise ValueError(f"input '{name}' has values outside {dtype.name}, the type the model declares")
            array = array.astype(dtype)
        cast[name] = np.ascontiguousarray(array)
    return cast
