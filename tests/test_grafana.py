"""The Grafana dashboard that ships in the package: Grafana's dashboard structure, and every series its
queries read is one the service really exports (a real registry, one observation of each metric)."""

from __future__ import annotations

import json
import re
from importlib.resources import files

from prometheus_client import generate_latest

from infersearch.serve.metrics import make_metrics
from tests.conftest import ROOT


def _dashboard() -> dict:
    return json.loads(files("infersearch.serve").joinpath("grafana/infersearch.json").read_text())


def _exported_series() -> set[str]:
    m = make_metrics(0.05, 32)
    for h in (m.request, m.queue, m.compute, m.decode, m.encode, m.batch):
        h.observe(0.01)
    m.requests.labels(code="200").inc()
    m.in_flight.inc()
    m.model.info({"study": "s", "trial": "1", "configuration": "", "format": "onnx", "artifact_sha256": "x"})
    text = generate_latest(m.registry).decode()
    return {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_dashboard_is_grafana_json_whose_queries_read_real_series():
    d = _dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    assert {v["name"] for v in d["templating"]["list"]} == {"job", "slo"}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    series = _exported_series()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0 and p["type"] in ("timeseries", "table", "stat")
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}" and p["targets"]
        for t in p["targets"]:
            names = re.findall(r"infersearch_[a-z_]+", t["expr"])
            assert names, t["expr"]
            missing = [n for n in names if n not in series]
            assert not missing, (p["title"], missing, sorted(series))
    exprs = [t["expr"] for p in d["panels"] for t in p["targets"]]
    assert any('le="$slo"' in e for e in exprs)  # the SLO bucket the alerts count


def test_the_serving_page_names_every_panel():
    page = " ".join((ROOT / "docs" / "serving.md").read_text().split())  # lines wrap inside a title
    for p in _dashboard()["panels"]:
        assert p["title"] in page, p["title"]
