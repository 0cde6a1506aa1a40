"""The Open Inference Protocol over HTTP (KServe v2, the base of Triton's REST API), so that third-party
clients and load tools (``tritonclient``, ``perf_analyzer``) drive the service: JSON tensors (flat ``data``
with ``shape`` and ``datatype``) and Triton's binary tensor extension in both directions (a JSON header of
``Inference-Header-Content-Length`` bytes, then each binary tensor's raw little-endian bytes in order).

This module turns bodies into arrays and arrays into bodies; the routes live in app.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from infersearch.serve.inputs import BadRequest

HEADER = "Inference-Header-Content-Length"
DATATYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip
INPUT, OUTPUT = "input", "output"


@dataclass
class Request:
    id: str | None
    x: np.ndarray  # float32, a batch of the served sample shape
    binary_output: bool  # answer the output as binary data


def _header(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the binary section after it."""
    try:
        n = len(body) if header_length is None else int(header_length)
    except ValueError as exc:
        raise BadRequest(400, f"{HEADER} is not an integer: {header_length!r}") from exc
    if not 0 < n <= len(body):
        raise BadRequest(400, f"{HEADER} is {n}, the body {len(body)} bytes")
    try:
        doc = json.loads(body[:n])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"the inference header is not valid JSON: {getattr(exc, 'msg', exc)}") from exc
    except RecursionError as exc:
        raise BadRequest(400, "the inference header is nested too deeply") from exc
    if not isinstance(doc, dict):
        raise BadRequest(400, "the inference header must be a JSON object")
    return doc, body[n:]


def _tensor(spec: Any, binary: memoryview, offset: int) -> tuple[np.ndarray, int]:
    """One input tensor and where the next one's binary data starts."""
    if not isinstance(spec, dict):
        raise BadRequest(400, "inputs[0] must be an object with name, shape, datatype and data")
    dtype = DATATYPES.get(str(spec.get("datatype")))
    if dtype is None:
        raise BadRequest(400, f"inputs[0].datatype {spec.get('datatype')!r} is not one of {', '.join(DATATYPES)}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadRequest(400, f"inputs[0].shape must be a list of non-negative integers, got {shape!r}")
    size = (spec.get("parameters") or {}).get("binary_data_size")
    count = int(np.prod(shape)) if shape else 1
    if size is not None:
        if size != count * np.dtype(dtype).itemsize or offset + size > len(binary):
            raise BadRequest(400, f"inputs[0].parameters.binary_data_size {size} does not fit shape {shape} "
                                  f"of {spec['datatype']} or the {len(binary) - offset} bytes left")  # fmt: skip
        return np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape), offset + size
    data = spec.get("data")
    if not isinstance(data, list):
        raise BadRequest(400, "inputs[0] needs data (a flat list) or parameters.binary_data_size")
    try:
        x = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise BadRequest(400, f"inputs[0].data does not hold {spec['datatype']} values: {exc}") from exc
    if x.size != count:
        raise BadRequest(400, f"inputs[0].data holds {x.size} values, shape {shape} needs {count}")
    return x.reshape(shape), offset


def parse_infer(body: bytes, header_length: str | None, sample_shape: tuple[int, ...]) -> Request:
    """A v2 inference request holding one input: a batch ``[n, *sample_shape]`` (or one sample)."""
    doc, binary = _header(body, header_length)
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise BadRequest(400, f"inputs must list exactly one tensor (the model's {INPUT!r})")
    x, _ = _tensor(inputs[0], memoryview(binary), 0)
    if x.dtype.kind not in "fiub":
        raise BadRequest(400, f"inputs[0] must hold numbers, got {x.dtype}")
    if tuple(x.shape) == sample_shape:
        x = x[None]
    if x.shape[1:] != sample_shape or x.shape[0] == 0:
        want = ", ".join(map(str, sample_shape))
        raise BadRequest(400, f"inputs[0].shape is {list(x.shape)}; expected [n, {want}] with n >= 1")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise BadRequest(400, "inputs[0] holds NaN or infinity")
    outputs = doc.get("outputs") or []
    params = doc.get("parameters") or {}
    binary_out = bool(params.get("binary_data_output")) or any(
        isinstance(o, dict) and (o.get("parameters") or {}).get("binary_data") for o in outputs
    )
    rid = doc.get("id")
    return Request(None if rid is None else str(rid), x, binary_out)


def encode_infer(y: np.ndarray, req: Request, model: str) -> tuple[bytes, dict[str, str], str]:
    """(body, headers, media type) of the response: JSON, or a JSON header then the output's raw bytes."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    out: dict[str, Any] = {"name": OUTPUT, "datatype": "FP32", "shape": list(y.shape)}
    doc: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": [out]}
    if req.id is not None:
        doc["id"] = req.id
    if not req.binary_output:
        out["data"] = y.ravel().tolist()
        return json.dumps(doc).encode(), {}, "application/json"
    raw = y.tobytes()
    out["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(doc).encode()
    return head + raw, {HEADER: str(len(head))}, "application/octet-stream"


def metadata(model: str, platform: str, sample_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> dict:
    """``GET /v2/models/{model}``."""
    return {
        "name": model,
        "versions": ["1"],
        "platform": platform,
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, *sample_shape]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, *out_shape]}],
    }


def model_config(model: str, platform: str, max_batch: int, sample_shape, out_shape) -> dict:
    """``GET /v2/models/{model}/config``, in Triton's model-configuration JSON (what perf_analyzer reads)."""
    return {
        "name": model,
        "platform": platform,
        "max_batch_size": max_batch,
        "input": [{"name": INPUT, "data_type": "TYPE_FP32", "dims": list(sample_shape)}],
        "output": [{"name": OUTPUT, "data_type": "TYPE_FP32", "dims": list(out_shape)}],
        "dynamic_batching": {},
    }
