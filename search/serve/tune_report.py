"""What serve-tune shows a user: the top-N settings as a table (console and ``top.md``) and p99 latency against
offered load, one line per setting, with the SLO drawn (``p99_vs_load.png``), both in the tune's folder."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from infersearch.core.cache import atomic_write_text
from infersearch.report.table import table
from infersearch.serve.settings import TUNED

TOP_COLUMNS = (
    *TUNED,
    "goodput_rps",
    "saturation_rps",
    "server_p50_ms",
    "server_p99_ms",
    "client_p99_ms",
    "within_slo",
    "cpu_cores",
    "cpu_ms_per_request",
    "rss_mb",
)


def ranked(rows: list[dict[str, Any]]) -> list[int]:
    """Row indices best first: highest goodput, then lowest server p99 at the target rate."""
    return sorted(range(len(rows)), key=lambda i: (-rows[i]["goodput_rps"], rows[i]["server_p99_ms"]))


def top_rows(rows: list[dict[str, Any]], n: int, chosen: int | None) -> list[dict[str, Any]]:
    """The ``n`` best rows, with the one serve-tune picked marked (goodputs within 5% tie on p99)."""
    return [
        {"rank": r + 1, **{k: rows[i].get(k) for k in TOP_COLUMNS}, "picked": i == chosen}
        for r, i in enumerate(ranked(rows)[:n])
    ]


def markdown(top: list[dict[str, Any]]) -> str:
    head = list(top[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in top]) + "\n"


def console(top: list[dict[str, Any]]) -> str:
    return table(list(top[0]), [list(r.values()) for r in top])


def label(setting: dict[str, Any]) -> str:
    s = setting
    workers = f"{s['workers']} worker{'s' * (s['workers'] != 1)}"
    threads = "threads auto" if not s["threads"] else f"{s['threads']} thread{'s' * (s['threads'] != 1)}"
    return f"batch {s['max_batch_size']}, delay {s['max_delay_ms']:g} ms, {workers}, {threads}"


def points(curve: dict[str, Any]) -> list[tuple[float, float]]:
    """Every load the setting was offered (the target's shares and the goodput probes): rate, server p99."""
    pts = [(p["offered_rps"], p["server_p99_ms"]) for p in curve["loads"] + curve["goodput_probes"]]
    return sorted((x, y) for x, y in pts if x and y == y and y > 0)


def p99_png(
    rows: list[dict[str, Any]], curves: list[dict[str, Any]], slo_ms: float, n: int, title: str, pick: dict | None
) -> bytes:
    """One line per setting (the ``n`` best) through every rate it was offered; the SLO dashed; the pick named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ranked(rows)[:n]
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    colours = plt.get_cmap("tab10").colors
    for c, i in enumerate(order):
        pts = points(curves[i])
        if not pts:
            continue
        goodput = rows[i]["goodput_rps"]
        picked = " (picked)" if curves[i]["setting"] == pick else ""
        name = f"{label(curves[i]['setting'])}: goodput {goodput:.0f} req/s{picked}"
        ax.plot(*zip(*pts), "o-", color=colours[c % 10], ms=4, lw=1.2, label=name)
        at = [y for x, y in pts if abs(x - goodput) < 0.05 + 1e-3 * goodput]
        if goodput > 0 and at:
            ax.scatter(goodput, at[0], marker="*", s=180, color=colours[c % 10], edgecolors="k", zorder=5)
    ax.axhline(slo_ms, color="red", ls="--", lw=1.2, label=f"SLO {slo_ms:g} ms (99% of requests within)")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests/s, Poisson arrivals)")
    ax.set_ylabel("p99 latency (ms, the server's histogram, log scale)")
    shown = f"top {len(order)} of {len(rows)} settings" if len(rows) > len(order) else f"{len(rows)} settings"
    ax.set_title(f"{title}\n{shown} by goodput; star = goodput (highest rate meeting the SLO)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.16), ncol=1, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def write(folder: Path, doc: dict[str, Any], n: int, title: str) -> dict[str, Path]:
    """``top.md`` and ``p99_vs_load.png`` in ``folder``; their paths."""
    paths = {"top": folder / "top.md", "figure": folder / "p99_vs_load.png"}
    atomic_write_text(paths["top"], markdown(doc["top"]))
    png = p99_png(doc["results"], doc["curves"], doc["slo_ms"], n, title, doc["pick"])
    tmp = paths["figure"].with_suffix(".png.tmp")
    tmp.write_bytes(png)
    tmp.replace(paths["figure"])
    return paths
