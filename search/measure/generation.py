"""A language model's latency in the units it is served in.

The decode step (one token for every sequence of the batch, with the KV cache) is timed as any variant
is, so its anchored figures are the usual latency keys; here they are named as a language-model user reads
them: TPOT (time per output token, one sequence's view: the step's p50), tokens/s (the batch's) and TTFT
(the prefill of ``gen.prompt_tokens``: time to first token, timed and anchored the same way).
"""

from __future__ import annotations

from typing import Any


def decode_units(decode: dict[str, Any]) -> dict[str, Any]:
    """TPOT and tokens/s from a decode step's latency metrics (a trial's, or the confirmation's)."""
    return {"tpot_ms": decode["latency_ms_p50"], "tokens_per_s": decode["throughput_per_s"]}


def generation_metrics(decode: dict[str, Any], prefill: dict[str, Any]) -> dict[str, Any]:
    """The decode step's metrics with TPOT, tokens/s and the prefill's TTFT; disturbed if either was."""
    out = (
        decode | decode_units(decode) | {"ttft_ms": prefill["latency_ms_p50"], "ttft_ms_p95": prefill["latency_ms_p95"]}
    )
    if "latency_ms_p50_measured" in prefill:
        out["ttft_ms_measured"] = prefill["latency_ms_p50_measured"]
    if "speedup_vs_baseline" in prefill:
        out["ttft_speedup_vs_baseline"] = prefill["speedup_vs_baseline"]
    if prefill.get("machine_disturbed"):
        out["machine_disturbed"] = 1.0
    return out
