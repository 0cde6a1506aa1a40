"""The Open Inference Protocol (KServe v2 / Triton REST), driven by the real ``tritonclient.http`` client
against a real ``infersearch serve`` on loopback: metadata, health, config and stats as perf_analyzer reads
them, binary and JSON tensors, single and batched requests, and bad requests answered with a 4xx and one line
while the service goes on."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

from tests.served import free_port, start, wait_ready

pytestmark = pytest.mark.slow  # a real server


def _infer(client: http.InferenceServerClient, model: str, x: np.ndarray, binary: bool) -> np.ndarray:
    inp = http.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = http.InferRequestedOutput("output", binary_data=binary)
    return client.infer(model, [inp], outputs=[out], request_id="r1").as_numpy("output")


def test_tritonclient_drives_the_service_in_binary_and_json(exported):
    model_dir, x, expected = exported
    port = free_port()
    proc = start(model_dir, port, "serve.max_batch_size=8")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as raw:
            wait_ready(raw, proc)
            client = http.InferenceServerClient(f"127.0.0.1:{port}")
            assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("served")
            meta = client.get_model_metadata("served")
            assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
            assert meta["outputs"][0]["shape"] == [-1, 10]
            config = client.get_model_config("served")
            assert config["max_batch_size"] == 8 and config["input"][0]["dims"] == [1, 8, 8]
            for binary in (True, False):
                np.testing.assert_allclose(_infer(client, "served", x, binary), expected, rtol=1e-4, atol=1e-5)
                one = _infer(client, "served", x[:1], binary)  # a batch of one
                np.testing.assert_allclose(one, expected[:1], rtol=1e-4, atol=1e-5)
            stats = client.get_inference_statistics("served")["model_stats"][0]
            assert stats["inference_count"] >= 12 and stats["execution_count"] >= 4
            split = stats["inference_stats"]
            assert split["success"]["count"] == 4 and split["queue"]["ns"] > 0
            # (de)serialisation apart from the model, as perf_analyzer prints it: compute input / output; the
            # three compute counts are per request and equal (perf_analyzer aborts otherwise)
            assert [split[k]["count"] for k in ("compute_input", "compute_infer", "compute_output")] == [4, 4, 4]
            assert split["compute_input"]["ns"] > 0 and split["compute_output"]["ns"] > 0
            with pytest.raises(InferenceServerException, match="unknown model 'other'"):
                _infer(client, "other", x, True)
            ints = http.InferInput("input", [5, 1, 8, 8], "INT32")  # integers are numbers too: cast to FP32
            ints.set_data_from_numpy(np.rint(x * 16).astype(np.int32), binary_data=True)
            assert client.infer("served", [ints]).as_numpy("output").shape == (5, 10)
            wrong = http.InferInput("input", [5, 8, 8], "FP32")  # a wrong shape
            wrong.set_data_from_numpy(x.reshape(5, 8, 8), binary_data=True)
            with pytest.raises(InferenceServerException, match=r"expected \[n, 1, 8, 8\]"):
                client.infer("served", [wrong])
            for body, reason in [
                ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "BF17", "data": [0] * 64}]},
                 "datatype 'BF17' is not one of"),
                ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 3}]},
                 "holds 3 values, shape [1, 1, 8, 8] needs 64"),
                ({"inputs": []}, "exactly one tensor"),
            ]:  # fmt: skip
                r = raw.post("/v2/models/served/infer", content=json.dumps(body))
                assert r.status_code == 400 and reason in r.json()["error"], r.text
            r = raw.post("/v2/models/served/infer", content=b"{}", headers={"Inference-Header-Content-Length": "9"})
            assert r.status_code == 400 and "Inference-Header-Content-Length is 9" in r.json()["error"]
            np.testing.assert_allclose(_infer(client, "served", x, True), expected, rtol=1e-4, atol=1e-5)
            assert raw.get("/v2").json()["extensions"] == ["binary_tensor_data", "statistics", "model_configuration"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
