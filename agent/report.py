"""The auditor's HTML report (``verify --report FILE.html``): self-contained, no external assets."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}
th{background:#eee}.ok{color:#060;font-weight:bold}.bad{color:#a00;font-weight:bold}
.tl{position:relative;height:1.6em;background:#f4f4f4;margin:.2em 0;border:1px solid #ddd}
.tl span{position:absolute;top:0;height:100%;background:#4a7;opacity:.8}
.tl span.ex{background:#fc6;opacity:.5}
"""


def write_html(report: Any, path: Path) -> None:
    """Write the verify report: verdict, per-camera timelines, the batch table and every finding."""
    path.write_text(render(report), encoding="utf-8")


def render(report: Any) -> str:
    e = html.escape
    verdict = (
        '<p class="ok">VERIFIED: no problems found</p>'
        if report.ok
        else f'<p class="bad">FAILED: {len(report.findings)} problems found</p>'
    )
    rows = "".join(
        f"<tr><td>{e(b.dock)}</td><td>{e(b.batch)}</td><td>{b.seq}</td><td>{b.recordings}</td>"
        f"<td>{b.objects_ok}</td><td>{b.plaintext_ok}</td><td>{b.custody_entries}</td>"
        f"<td class={'ok' if b.signature_ok else 'bad'}>{'ok' if b.signature_ok else 'BAD'}</td>"
        f"<td>{b.problems}</td></tr>"
        for b in report.batches
    )
    findings = "".join(
        f"<tr><td>{e(f.problem)}</td><td>{e(f.batch or '')}</td><td>{e(f.key or '')}</td>"
        f"<td>{'' if f.custody_seq is None else f.custody_seq}</td><td>{e(f.message)}</td></tr>"
        for f in report.findings
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>bodycam audit report</title>"
        f"<style>{STYLE}</style></head><body><h1>Bodycam evidence audit</h1>{verdict}"
        f"<p>{report.objects_seen} objects examined.</p>"
        f"<h2>Timeline per camera</h2>{_timelines(report)}"
        "<h2>Batches</h2><table><tr><th>Dock</th><th>Batch</th><th>Seq</th><th>Recordings</th>"
        "<th>Objects OK</th><th>Decrypted OK</th><th>Custody entries</th><th>Signature</th><th>Problems</th></tr>"
        f"{rows}</table><h2>Findings</h2>"
        + (
            "<table><tr><th>Problem</th><th>Batch</th><th>Object</th><th>Custody entry</th><th>Detail</th></tr>"
            f"{findings}</table>"
            if findings
            else "<p>None.</p>"
        )
        + "</body></html>\n"
    )


def _timelines(report: Any) -> str:
    import datetime as dt

    def ts(text: str) -> float:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    per_camera: dict[str, list[tuple[float, float, str]]] = {}
    for b in report.batches:
        for serial, start, end, recording_id in b.timeline:
            try:
                span = (ts(start), ts(end), f"{b.batch} #{recording_id}")
            except (TypeError, ValueError):
                continue
            per_camera.setdefault(serial, []).append(span)
    if not per_camera:
        return "<p>No recordings.</p>"
    lo = min(s for spans in per_camera.values() for s, _, _ in spans)
    hi = max(e for spans in per_camera.values() for _, e, _ in spans)
    width = max(hi - lo, 1.0)
    out = []
    for camera, spans in sorted(per_camera.items()):
        bars = "".join(
            f"<span title='{html.escape(label)}' style='left:{(s - lo) / width * 100:.2f}%;"
            f"width:{max((e - s) / width * 100, 0.4):.2f}%'></span>"
            for s, e, label in spans
        )
        out.append(f"<div><b>{html.escape(camera)}</b><div class='tl'>{bars}</div></div>")
    first = dt.datetime.fromtimestamp(lo, dt.UTC).isoformat()
    last = dt.datetime.fromtimestamp(hi, dt.UTC).isoformat()
    return f"<p>{first} .. {last}</p>" + "".join(out)
