"""One report per run: ``reports/<timestamp>/report.json`` (every figure) and ``report.html`` (plots, SLO verdicts,
and the difference from the previous run). Plots are inline SVG: the page needs nothing from the network."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from harness.settings import current

REPORTS = current().reports_dir
KEY_FIGURES = [  # (label, path into report.json, lower is better)
    ("throughput jobs/s", ("figures", "throughput_jobs_per_s"), False),
    ("capacity / SQS ceiling", ("figures", "capacity", "share_of_ceiling"), False),
    ("backlog drain s", ("figures", "drain_s"), True),
    ("inference enqueue->done p95 ms", ("figures", "queue", "inference", "done_p95_ms"), True),
    ("inference enqueue->start p95 ms", ("figures", "queue", "inference", "wait_p95_ms"), True),
    ("score enqueue->done p95 ms", ("figures", "queue", "score", "done_p95_ms"), True),
    ("POST /api/v1/inference p95 ms", ("figures", "api", "POST /api/v1/inference", "p95_ms"), True),
    ("POST /api/v1/scores p95 ms", ("figures", "api", "POST /api/v1/scores", "p95_ms"), True),
    ("lstm p95 ms", ("figures", "models", "lstm", "p95_ms"), True),
    ("lstm raw forward (8 windows) median ms", ("figures", "model_ceilings", "lstm", "median_ms"), True),
    ("jobs", ("figures", "jobs"), False),
    ("resilience score", ("figures", "resilience", "score"), False),  # chaos-load runs (harness.oracles.windows)
]


def reports_path(*parts: str) -> Path:
    """A path under the one reports folder (``VERISIM_REPORTS_DIR``, default ``reports/``), its folder created."""
    path = REPORTS.joinpath(*parts)
    (path.parent if path.suffix else path).mkdir(parents=True, exist_ok=True)
    return path


def new_run_dir() -> Path:
    d = REPORTS / time.strftime("%Y%m%d-%H%M%S")
    n = 1
    while d.exists():
        d = REPORTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        n += 1
    d.mkdir(parents=True)
    return d


def previous_report(run_dir: Path) -> dict | None:
    runs = sorted(p for p in REPORTS.glob("*/report.json") if p.parent != run_dir)
    return json.loads(runs[-1].read_text()) if runs else None


def _get(doc: dict | None, path):
    for k in path:
        if not isinstance(doc, dict) or k not in doc:
            return None
        doc = doc[k]
    return doc


def noise_bands() -> dict[str, float]:
    """Run-to-run noise per key figure (percent), measured over repeated runs on this machine (slo.toml)."""
    from harness.oracles import slo

    return slo.load().get("noise_band_pct", {})


def diff(current: dict, previous: dict | None, bands: dict[str, float] | None = None) -> list[dict]:
    """Each key figure against the previous run; ``worse`` only when it moved the wrong way beyond its noise band
    (``bands``: label -> percent; default: slo.toml's ``[noise_band_pct]``, else 10 %)."""
    bands = noise_bands() if bands is None else bands
    rows = []
    for label, path, lower_better in KEY_FIGURES:
        now, before = _get(current, path), _get(previous, path)
        change = None
        if isinstance(now, int | float) and isinstance(before, int | float) and before:
            change = round((now - before) / abs(before) * 100, 1)
        band = float(bands.get(label, 10))
        worse = change is not None and ((change > 0) == lower_better) and abs(change) > band
        rows.append(
            {
                "figure": label,
                "now": now,
                "previous": before,
                "change_pct": change,
                "worse": worse,
                "noise_band_pct": band,
            }
        )
    return rows


def write(run_dir: Path, figures: dict, verdicts, faults: list[dict] | None = None, extra: dict | None = None) -> Path:
    """``faults``: the fault windows (name, start, end, …; a chaos-load run adds parameters, evidence, verdicts and
    per-phase figures); ``extra``: more top-level sections (a chaos-load run: scenario, phases, ledger)."""
    previous = previous_report(run_dir)
    doc = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "figures": figures,
        "slo": [v.__dict__ for v in verdicts],
        "faults": faults or [],
        "previous": previous["created"] if previous else None,
        **(extra or {}),
    }
    doc["diff"] = diff(doc, previous)
    (run_dir / "report.json").write_text(json.dumps(doc, indent=2, default=str))
    (run_dir / "report.html").write_text(render_html(doc))
    return run_dir / "report.html"


# -- HTML -------------------------------------------------------------------------------------------------------
def _chart(
    title: str, series: list[tuple[str, str, list[tuple[float, float]]]], faults, t0: float, unit: str = ""
) -> str:
    w, h, pl, pr, pt, pb = 640, 200, 48, 10, 10, 24
    pts = [p for _, _, s in series for p in s]
    if not pts:
        return f"<section><h2>{html.escape(title)}</h2><p class=empty>no data</p></section>"
    xmax = max(max(x for x, _ in pts), 1.0)
    ymax = max(max(y for _, y in pts), 1e-9) * 1.1

    def X(x):
        return pl + (w - pl - pr) * x / xmax

    def Y(y):
        return pt + (h - pt - pb) * (1 - y / ymax)

    parts = [f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}">']
    for f in faults:
        x1, x2 = X(max(0, f["start"] - t0)), X(min(xmax, f["end"] - t0))
        name = html.escape(f.get("name", "fault"))
        parts.append(
            f'<rect x="{x1:.1f}" y="{pt}" width="{max(1, x2 - x1):.1f}" height="{h - pt - pb}" '
            f'class="fault" data-fault="{name}"><title>{name}</title></rect>'
            f'<text x="{x1 + 2:.1f}" y="{pt + 9 + 10 * (faults.index(f) % 3)}" class="fault-label" '
            f'data-fault="{name}">{name}</text>'
        )
    for frac in (0, 0.5, 1):
        y = Y(ymax * frac / 1.1)
        parts.append(
            f'<line x1="{pl}" x2="{w - pr}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{pl - 4}" y="{y + 3:.1f}" text-anchor="end">{ymax * frac / 1.1:.3g}</text>'
        )
    parts.append(
        f'<text x="{w - pr}" y="{h - 6}" text-anchor="end">{xmax:.0f} s</text><text x="{pl}" y="{h - 6}">0 s</text>'
    )
    for _, color, s in series:
        d = " ".join(f"{'M' if i == 0 else 'L'}{X(x):.1f},{Y(y):.1f}" for i, (x, y) in enumerate(s))
        parts.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
    parts.append("</svg>")
    legend = " ".join(f'<span><i style="background:{c}"></i>{html.escape(n)}</span>' for n, c, _ in series)
    return (
        f"<section><h2>{html.escape(title)}{f' ({unit})' if unit else ''}</h2>{''.join(parts)}"
        f'<div class="legend">{legend}</div></section>'
    )


def _table(headers: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('–' if c is None else str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_STYLE = """
body{margin:0;font:14px/1.45 system-ui,sans-serif;background:#0f1420;color:#e6ebf5}
header,main{padding:16px 24px} header{border-bottom:1px solid #263049} h1{margin:0;font-size:20px}
.verdict{display:inline-block;margin-left:12px;padding:2px 12px;border-radius:99px;font-weight:700}
.PASS{background:rgba(62,207,142,.15);color:#3ecf8e} .FAIL{background:rgba(255,107,107,.15);color:#ff6b6b}
.grid3{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
section{background:#171e2e;border:1px solid #263049;border-radius:10px;padding:12px 14px;margin-bottom:16px}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.05em;color:#8b96ad;margin:0 0 8px}
svg{width:100%;height:auto} svg text{fill:#8b96ad;font-size:10px} .grid{stroke:#263049}
.fault{fill:rgba(255,107,107,.18)} .fault-label{fill:#ff9b9b;font-size:9px} .legend span{margin-right:14px;color:#8b96ad;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #263049}
th{color:#8b96ad} .slo td:first-child{font-weight:700} .empty{color:#8b96ad}
"""


def _charts(f: dict, faults: list[dict]) -> list[str]:
    """API latency, throughput and queue depth over the run, the fault windows shaded."""
    hist = f.get("api_history", [])
    depth = f.get("queue_depth", [])
    t0 = min([h["t"] for h in hist] + [s["t"] for s in depth] or [0])
    buckets: dict[int, int] = {}
    for t in f.get("finished_times", []):
        b = int((t - t0) // 5)
        buckets[b] = buckets.get(b, 0) + 1
    tput = [(b * 5 + 2.5, n / 5) for b, n in sorted(buckets.items())]

    def series(rows, key):
        return [(r["t"] - t0, r[key]) for r in rows if r[key] is not None]

    charts = [
        _chart(
            "API latency over time",
            [("p50", "#5aa9ff", series(hist, "p50_ms")), ("p95", "#c08bff", series(hist, "p95_ms"))],
            faults,
            t0,
            "ms",
        ),
        _chart(
            "Throughput",
            [("jobs completed /s", "#3ecf8e", tput), ("API requests /s", "#f5b942", series(hist, "rps"))],
            faults,
            t0,
            "per second",
        ),
        _chart(
            "Queue depth",
            [
                ("waiting", "#5aa9ff", series(depth, "waiting")),
                ("in flight", "#f5b942", series(depth, "in_flight")),
                ("DLQ", "#ff6b6b", series(depth, "dlq")),
            ],
            faults,
            t0,
            "messages",
        ),
    ]
    arrivals = (f.get("arrivals") or {}).get("series")
    if arrivals:  # the open model: what the shape asked, what the generator sent, what was answered
        charts.insert(
            0,
            _chart(
                f"Offered vs achieved vs completed ({f['arrivals']['shape']})",
                [
                    ("asked (offered) /s", "#8b96ad", series(arrivals, "asked")),
                    ("sent on time (achieved) /s", "#5aa9ff", [(r["t"] - t0, r["sent"] - r["late"]) for r in arrivals]),
                    ("answered /s", "#f5b942", series(arrivals, "answered")),
                    ("jobs completed /s", "#3ecf8e", tput),
                ],
                faults,
                t0,
                "per second",
            ),
        )
    return charts


def _tables(doc: dict) -> dict[str, str]:
    """The report's tables, rendered: SLO verdicts, the API, the queue, the stages, the difference from the last run."""
    f = doc["figures"]
    slo_rows = [[("PASS" if v["ok"] else "FAIL"), v["slo"], v["measured"], v["target"]] for v in doc["slo"]]
    api_rows = [
        [n, s["requests"], s["failures"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["rps"]]
        for n, s in sorted(f.get("api", {}).items())
    ]
    q_rows = [
        [k, q["jobs"], q["wait_p50_ms"], q["wait_p95_ms"], q["done_p50_ms"], q["done_p95_ms"]]
        for k, q in sorted(f.get("queue", {}).items())
    ]
    stage_rows = [
        [k, stage, st["runs"], st["p50_ms"], st["p95_ms"], st["max_ms"]]
        for k, q in sorted(f.get("queue", {}).items())
        for stage, st in q.get("stages", {}).items()
    ]
    diff_rows = [
        [
            d["figure"],
            d["now"],
            d["previous"],
            "" if d["change_pct"] is None else f"{d['change_pct']:+.1f}%" + (" ▲ worse" if d["worse"] else ""),
        ]
        for d in doc["diff"]
    ]
    return {
        "slo": _table(["verdict", "SLO", "measured", "target"], slo_rows, "slo"),
        "api": _table(["endpoint", "requests", "failures", "p50 ms", "p95 ms", "p99 ms", "req/s"], api_rows),
        "queue": _table(["kind", "jobs", "enqueue→start p50 ms", "p95 ms", "enqueue→done p50 ms", "p95 ms"], q_rows),
        "stages": _table(["kind", "stage", "runs", "p50 ms", "p95 ms", "slowest ms"], stage_rows),
        "diff": _table(["figure", "now", "previous", "change"], diff_rows),
    }


def render_html(doc: dict) -> str:
    f = doc["figures"]
    faults = doc.get("faults", [])
    charts = _charts(f, faults)
    tables = _tables(doc)
    passed = sum(1 for v in doc["slo"] if v["ok"])
    verdict = "PASS" if passed == len(doc["slo"]) else "FAIL"
    fault_note = (
        f"<p>Fault windows are shaded: {', '.join(html.escape(x.get('name', 'fault')) for x in faults)}.</p>"
        if faults
        else "<p>No faults were injected in this run.</p>"
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Verisim run {html.escape(doc["created"])}</title>
<style>{_STYLE}</style></head><body>
<header><h1>Verisim run {html.escape(doc["created"])}<span class="verdict {verdict}">{verdict}: {passed}/{len(doc["slo"])} SLOs</span></h1>
<p>{f.get("users")} Locust users for {f.get("duration_s")} s{f" ({f.get('locust_workers')} Locust workers)" if f.get("locust_workers") else ""};
{f.get("jobs")} jobs accepted, {f.get("by_status")}; throughput {f.get("throughput_jobs_per_s")} jobs/s
(raw SQS ceiling of the same run: {_get(f, ("sqs_ceiling", "send_receive_delete_per_s"))} msg/s); backlog drained {f.get("drain_s")} s after the load stopped.
Previous run: {html.escape(str(doc.get("previous") or "none"))}.</p>{fault_note}</header>
<main><div class="grid3">{"".join(charts)}</div>
{_chaos_sections(doc)}
<section><h2>SLO verdicts</h2>{tables["slo"]}</section>
<section><h2>API (from Locust)</h2>{tables["api"]}</section>
<section><h2>Queue-native (from the jobs' own timestamps)</h2>{tables["queue"]}</section>
<section><h2>Pipeline stages (the worker's per-job stage timings)</h2>{tables["stages"]}</section>
<section><h2>Against the previous run</h2>{tables["diff"]}</section>
</main></body></html>"""


def _chaos_sections(doc: dict) -> str:
    """A chaos-load run: the fault × phase table (each window's verdict) and the ledger's summary."""
    windows = [f for f in doc.get("faults", []) if "phases" in f]
    if not windows and "ledger" not in doc:
        return ""
    rows = []
    for w in windows:
        ok = all(v["ok"] for v in w.get("verdicts", []))
        for ph in ("fault", "recovery"):
            f = w["phases"][ph]
            rows.append(
                [
                    w["name"] if ph == "fault" else "",
                    w["fault"] if ph == "fault" else "",
                    ph,
                    f["accepted"],
                    f["refused"],
                    f["server_errors"],
                    f["api_p95_ms"],
                    f["done_p95_ms"],
                    f["completed"],
                    w.get("recover_s") if ph == "recovery" else "",
                    w.get("trace") if ph == "fault" else "",
                    ("PASS" if ok else "FAIL") if ph == "fault" else "",
                ]
            )
    failing = [
        f"{v['slo']}: measured {v['measured']}, target {v['target']}"
        for w in windows
        for v in w.get("verdicts", [])
        if not v["ok"]
    ]
    led = doc.get("ledger") or {}
    problems = led.get("problems", [])
    ledger_html = (
        f"<p>{led.get('jobs', 0)} jobs, by status {html.escape(str(led.get('by_status', {})))}; "
        f"{len(problems)} problem(s){': ' + html.escape(str(led.get('kinds'))) if problems else ''}; "
        f"DLQ {html.escape(str(led.get('dlq', {})))}.</p>"
        + ("<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems[:50]) + "</ul>" if problems else "")
    )
    return (
        '<section id="faults"><h2>Fault × phase</h2>'
        + _table(
            [
                "window",
                "fault",
                "phase",
                "accepted",
                "refused",
                "5xx",
                "API p95 ms",
                "done p95 ms",
                "completed",
                "recover s",
                "evidence",
                "verdict",
            ],
            rows,
            "slo",
        )
        + ("<p>" + "<br>".join(html.escape(x) for x in failing) + "</p>" if failing else "")
        + f'</section><section id="ledger"><h2>Ledger</h2>{ledger_html}</section>'
    )
