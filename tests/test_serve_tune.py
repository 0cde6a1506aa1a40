"""infersearch serve-tune for real: each candidate setting served by a real server on loopback and
driven by the load generator; the pick stored beside the export, in the study and in W&B (read back
from what wandb wrote offline), then used by ``infersearch serve`` unless given on the command line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import optuna
import pytest

from tests.conftest import ROOT, run_cli
from tests.served import free_port, start, wait_ready
from tests.wandb_files import read_runs

pytestmark = pytest.mark.slow  # real servers under load


def test_serve_tune_measures_each_setting_stores_the_pick_and_serve_uses_it(exported, tmp_path):
    model_dir = tmp_path / "model"  # a copy: the pick lands beside it, not beside the shared export
    shutil.copytree(exported[0], model_dir)
    optuna.create_study(study_name="served", storage=f"sqlite:///{tmp_path / 'study.db'}")
    proc = run_cli(
        "serve-tune", f"serve.model_dir={model_dir}", "study.name=served", f"study.output_dir={tmp_path}",
        "serve.slo_ms=500", "tune.rate=20", "tune.duration_s=0.5", "tune.loads=[0.5,1.0]",
        "tune.max_batch_size=[4,16]", "tune.max_delay_ms=[1]", "tune.workers=[1]", "tune.threads=[1]",
        "tune.goodput_steps=3", f"tune.port={free_port()}", timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "serving.json").read_text())
    assert [r["max_batch_size"] for r in doc["results"]] == [4, 16]
    for r in doc["results"]:
        assert r["saturation_rps"] > 20 and r["errors"] == 0 and r["server_p99_ms"] > 0
        assert r["within_slo"] == 1.0 and r["meets_slo"]
    for r, curve in zip(doc["results"], doc["curves"]):  # the goodput is the highest probed rate that held
        held = [p["offered_rps"] for p in curve["goodput_probes"] if p["holds"]]
        assert r["goodput_rps"] == pytest.approx(max(held), abs=0.1) and r["goodput_rps"] <= r["saturation_rps"] + 0.1
        assert all(p["within_slo"] >= 0.99 for p in curve["goodput_probes"] if p["holds"])
    top = max(r["goodput_rps"] for r in doc["results"])  # within 5% of the best is a tie: lowest p99 wins
    best = min((r for r in doc["results"] if r["goodput_rps"] >= 0.95 * top), key=lambda r: r["server_p99_ms"])
    assert doc["pick"] == {k: best[k] for k in ("max_batch_size", "max_delay_ms", "workers", "threads")}
    assert "picked serve.max_batch_size=" in proc.stdout and "HTTP Request" not in proc.stderr
    stored = optuna.load_study(study_name="served", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert stored.user_attrs["serving"]["pick"] == doc["pick"]
    (run,) = [r for r in read_runs(tmp_path / "wandb") if r.job_type == "serve-tune"]
    assert run.summary["pick"] == doc["pick"] and run.summary["serving/nrows"] == 2
    tables = {f.name.split("_0_")[0]: json.loads(f.read_text()) for f in run.files if f.name.endswith(".table.json")}
    assert [row[tables["serving"]["columns"].index("max_batch_size")] for row in tables["serving"]["data"]] == [4, 16]
    assert len(tables["p99_vs_load_table"]["data"]) == 4  # two loads for each of two settings
    assert [row[tables["serving_top"]["columns"].index("rank")] for row in tables["serving_top"]["data"]] == [1, 2]
    (image,) = [f for f in run.files if f.suffix == ".png"]  # the figure, as W&B stored it
    assert image.read_bytes() == (tmp_path / "serve-tune" / "p99_vs_load.png").read_bytes()
    for r in doc["results"]:  # what each setting cost the machine, and its latency at the target rate
        assert 0 < r["cpu_cores"] <= 2 * os.cpu_count() and r["cpu_ms_per_request"] > 0 and 50 < r["rss_mb"] < 4000
        assert 0 < r["server_p50_ms"] <= r["server_p99_ms"]
    top = (tmp_path / "serve-tune" / "top.md").read_text().splitlines()
    assert top[0].startswith("| rank |") and len(top) == 4 and "| True |" in "".join(top)

    port = free_port()
    server = start(model_dir, port, "serve.threads=1")  # threads given: only the other settings come from the pick
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_ready(client, server)
            metrics = client.get("/metrics").text
    finally:
        server.terminate()
        out = server.communicate(timeout=40)[0]
    pick = doc["pick"]
    assert (
        f"serving settings from serve-tune ({tmp_path / 'serving.json'}): max_batch_size={pick['max_batch_size']}"
        in out
    )
    assert f'infersearch_batch_size_bucket{{le="{float(pick["max_batch_size"])}"}}' in metrics  # the largest batch


def _completed(db) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as con:
        try:
            return con.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
        except sqlite3.OperationalError:  # Optuna is still creating its tables
            return 0


def test_an_interrupted_tune_resumes_where_it_stopped(exported, tmp_path):
    """SIGTERM during the second setting: the first stays measured, the server stops, and the same command
    measures only the rest; serving.json then holds all three."""
    model_dir = tmp_path / "model"
    shutil.copytree(exported[0], model_dir)
    args = [
        "serve-tune", f"serve.model_dir={model_dir}", f"study.output_dir={tmp_path}", "serve.slo_ms=500",
        "tune.rate=20", "tune.duration_s=0.3", "tune.loads=[1.0]", "tune.max_batch_size=[1,4,16]",
        "tune.max_delay_ms=[1]", "tune.workers=[1]", "tune.threads=[1]", "tune.goodput_steps=2",
        f"tune.port={free_port()}", "tracking.mode=disabled",
    ]  # fmt: skip
    db = tmp_path / "serve-tune" / "tune.db"
    proc = subprocess.Popen([sys.executable, "-m", "infersearch", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while _completed(db) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # into the second setting's measurement
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out[-2000:]
    assert "run the same command again to continue" in out and not (tmp_path / "serving.json").exists()
    with contextlib.closing(sqlite3.connect(db)) as con:
        states = [s for (s,) in con.execute("select state from trials order by number")]
    assert states[0] == "COMPLETE" and "RUNNING" not in states and len(states) < 4
    first = optuna.load_study(study_name=optuna.get_all_study_names(f"sqlite:///{db}")[0], storage=f"sqlite:///{db}")
    started = {t.number: t.datetime_start for t in first.trials if t.state.name == "COMPLETE"}

    again = run_cli(*args, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "measured before" in again.stderr
    study = optuna.load_study(study_name=first.study_name, storage=f"sqlite:///{db}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["max_batch_size"] for t in complete) == [1, 4, 16]  # each measured once in all
    assert all(t.datetime_start == started[t.number] for t in complete if t.number in started)
    doc = json.loads((tmp_path / "serving.json").read_text())
    assert sorted(r["max_batch_size"] for r in doc["results"]) == [1, 4, 16] and doc["tune_study"] == str(db)
