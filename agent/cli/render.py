"""How results read on a terminal: the verify table, the bays' lines, why footage stayed on the dock."""

from __future__ import annotations

from typing import Any

import click

STAYED_WORDS = {
    "operational": "tagged operational",
    "no_exercise": "no exercise for this camera",
    "outside_window": "outside every window",
    "clock_unplaceable": "clock not placeable",
    "no_agreement": "covered by no data-sharing agreement",
}


def stayed_text(doc: dict[str, Any]) -> str | None:
    """``stayed on the dock: 2 tagged operational, 1 outside every window (nearest EX-1: 14 min outside,
    ends after it closes)`` from a camera's ``out_of_scope_reasons`` and ``nearest_window``; None if none stayed."""
    from bodycam.agent.pipeline.policy import Miss

    reasons = doc.get("out_of_scope_reasons") or {}
    parts = []
    for code, words in STAYED_WORDS.items():
        count = int(reasons.get(code, 0))
        if not count:
            continue
        text = f"{count} {words}"
        near = doc.get("nearest_window")
        if code == "outside_window" and near:
            text += f" ({Miss(near['exercise'], float(near['off_by_s']), near['side']).describe()})"
        parts.append(text)
    parts += [f"{n} {code}" for code, n in sorted(reasons.items()) if code not in STAYED_WORDS and n]
    return "stayed on the dock: " + ", ".join(parts) if parts else None


def bay_line(bay: dict[str, Any]) -> str:
    from bodycam.agent.cli.progress import _fmt_bytes, _fmt_eta, bar

    total = bay.get("bytes_total") or 0
    done = bay.get("bytes_done") or 0
    line = f"{bay['camera']:<14} {bay['state']:<8} {bay['address']:<28}"
    if total:  # the daemon sends a total only for a transfer that runs or was cut short
        line += f" [{bar(done / total, 20)}] {_fmt_bytes(done)}/{_fmt_bytes(total)}"
    if bay.get("rate_bytes_per_s"):  # and a speed only while it runs
        line += f" {_fmt_bytes(bay['rate_bytes_per_s'])}/s ETA {_fmt_eta(bay.get('eta_s') or 0)}"
    if bay.get("recording") is not None:
        line += f" rec #{bay['recording']}"
    if bay.get("note"):
        line += f"  ({bay['note']})"
    if bay.get("last_error"):
        line += f"  last error: {bay['last_error']}"
    return line


def print_verify(report: Any) -> None:
    header = ("DOCK", "BATCH", "SEQ", "RECORDINGS", "OBJECTS OK", "DECRYPTED OK", "CUSTODY", "SIGNATURE", "PROBLEMS")
    rows = [header] + [
        (
            b.dock,
            b.batch,
            str(b.seq),
            str(b.recordings),
            str(b.objects_ok),
            str(b.plaintext_ok),
            str(b.custody_entries),
            "ok" if b.signature_ok else "BAD",
            str(b.problems),
        )
        for b in report.batches
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for f in report.findings:
        where = ", ".join(
            f"{k} {v}"
            for k, v in (("batch", f.batch), ("key", f.key), ("custody entry", f.custody_seq))
            if v is not None
        )
        click.echo(f"PROBLEM {f.problem}: {f.message}" + (f" [{where}]" if where else ""))
    erasures = getattr(report, "erasures", [])
    for e in erasures:
        click.echo(
            f"ERASED {e.key}: under agreement {', '.join(e.agreements) or '?'} at {e.erased_at} (retained until "
            f"{e.retain_until}; custody entry {e.custody_seq} in batch {e.entry_batch})"
        )
    if report.ok:
        erased = f", {len(erasures)} erased under their agreements' retention" if erasures else ""
        click.echo(f"VERIFIED: {len(report.batches)} batches, {report.objects_seen} objects{erased}, no problems")
    else:
        click.echo(f"FAILED: {len(report.findings)} problems in {report.objects_seen} objects")


def iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
