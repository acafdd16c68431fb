"""The auditor's HTML report (``verify --report FILE.html``): an audit document that stands on its own.

Why it looks like this: the report is what an auditor files, prints and shows a court, so it names its
inputs (the bucket, the ``allowed_signers`` file and its key fingerprints, when the audit ran, which
version of the tool), gives each recording's evidence values in full, draws the recordings against the
exercise windows on a time axis, and lists every finding under its batch with the object it concerns.

It is one self-contained file: inline CSS and SVG, no script, no external asset, nothing fetched, so it
opens the same offline in ten years. Everything from the bucket is untrusted and reaches the page only
through :func:`html.escape` (text and attribute values alike), cut to a bounded length; only numbers
the report computes itself go into SVG coordinates. Without ``--identity`` the page holds nothing
personal (the manifest carries pseudonyms only); with it, officer ids and exercise sites from the
decrypted sidecars appear in clear and the page says so at the top: it is then personal data itself.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bodycam.agent.audit.verify import MAX_REPORT_ROWS, BatchResult, Finding, VerifyReport
from bodycam.agent.audit.wording import counted
from bodycam.agent.formats.times import parse_or_none
from bodycam.drivers.errors import ConfigError
from bodycam.drivers.files import create_private

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_TEXT = 200  # characters of any one value from the bucket shown in the page
MAX_TIMELINE_ROWS = 200  # cameras drawn on the timeline (the tables list every recording regardless)

STYLE = """
@page{size:A4;margin:12mm 11mm 14mm 11mm}
body{font-family:"DejaVu Sans",system-ui,sans-serif;margin:2em;color:#111;font-size:10pt;line-height:1.3}
h1{font-size:17pt;margin:0 0 .3em}h2{font-size:13pt;margin:1.2em 0 .4em;border-bottom:1px solid #999}
h3{font-size:10.5pt;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.4em 0 1em;width:100%}
td,th{border:1px solid #aaa;padding:.2em .4em;text-align:left;vertical-align:top}
th{background:#eee}thead{display:table-header-group}tr{break-inside:avoid}
td.num{text-align:right;white-space:nowrap}
code,.mono{font-family:"DejaVu Sans Mono",monospace;font-size:8pt}
.hash{font-family:"DejaVu Sans Mono",monospace;font-size:7.5pt;white-space:nowrap}.nowrap{white-space:nowrap}
table.recs tr.first td{border-top:1.5px solid #555}table.recs tr.more td{border-top:1px dotted #ccc}
table.recs td.label{white-space:nowrap;color:#333;font-size:8pt;width:1%}table.recs td.rec{width:40%}
table.recs tbody{break-inside:avoid}
.ok{color:#060;font-weight:bold}.bad{color:#a00;font-weight:bold}
.verdict{font-size:13pt;padding:.3em .6em;border:2px solid currentColor;display:inline-block}
.personal{border:3px solid #a00;background:#fee;color:#700;padding:.5em .8em;font-weight:bold;margin:.6em 0}
.meta th{width:11em;background:#f4f4f4}
.finding{border-left:4px solid #a00;padding:.2em .6em;margin:.4em 0;break-inside:avoid}
.finding .key{display:block;font-family:"DejaVu Sans Mono",monospace;font-size:8pt}
.note{color:#444;font-size:9pt}
svg.tl{width:100%;height:auto;border:1px solid #ccc;background:#fff}
svg.tl .ex{fill:#fc6;opacity:.45}svg.tl .ex.extent{fill:none;stroke:#c80;stroke-dasharray:6 3;opacity:1}
svg.tl .rec{fill:#2a7;stroke:#063;stroke-width:.5}svg.tl .axis{stroke:#444;stroke-width:1}
svg.tl .grid{stroke:#ddd;stroke-width:1}svg.tl text{font-family:"DejaVu Sans",sans-serif;font-size:11px;fill:#222}
svg.tl text.exl{fill:#850;font-size:10px}
@media print{body{margin:0;font-size:8.5pt}.hash{font-size:7pt}code,.mono{font-size:7pt}h2{break-after:avoid}h3{break-after:avoid}
 .finding,.personal{break-inside:avoid}svg.tl{break-inside:avoid}}
"""


def write_html(report: VerifyReport, path: Path) -> None:
    """Write the report as it is made (the batch table of a run of many batches is never one string),
    0600 whatever the umask: it names every recording, and with --identity holds personal data.
    Raises ConfigError (exit 2, one line) if the file cannot be written."""
    try:
        with os.fdopen(create_private(path), "w", encoding="utf-8") as out:
            for piece in pieces(report):
                out.write(piece)
    except OSError as err:
        raise ConfigError(f"cannot write --report {path}: {err.strerror or err}") from err


def _e(value: object, limit: int = MAX_TEXT) -> str:
    """Escape any value from the bucket for text or a quoted attribute, cut to ``limit`` characters."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        text = text[:limit] + "\u2026"
    return html.escape(text, quote=True)


def render(report: VerifyReport) -> str:
    """The whole page as a string."""
    return "".join(pieces(report))


def pieces(report: VerifyReport) -> Iterator[str]:
    """The page in pieces, in order: the batch table row by row, read from the batch store."""
    audit = report.audit
    personal = audit is not None and audit.decrypted
    title = "bodycam evidence audit" + (" (PERSONAL DATA)" if personal else "")
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<style>{STYLE}</style></head><body><h1>Bodycam evidence audit</h1>",
    ]
    if personal:
        parts.append(
            "<div class='personal'>PERSONAL DATA. This audit was run with an age identity (--identity): the "
            "personal-data sidecars were decrypted, and officer ids and exercise sites are shown in clear. "
            "Keep and share this report only as the data-sharing agreement allows.</div>"
        )
    parts.append(
        "<p class='verdict ok'>VERIFIED: no problems found</p>"
        if report.ok
        else f"<p class='verdict bad'>FAILED: {counted(len(report.findings), 'problem')} found</p>"
    )
    yield from parts
    yield _audit_section(report)
    yield _findings_section(report)
    yield _erasures_section(report)
    yield from _batches_section(report)
    yield _timeline_section(report)
    yield from _recordings_section(report)
    yield "</body></html>\n"


# -- the audit's inputs ------------------------------------------------------------------------------
def _audit_section(report: VerifyReport) -> str:
    audit = report.audit
    if audit is None:
        return f"<p>{counted(report.objects_seen, 'object')} examined.</p>"
    decryption = (
        "yes: plaintext hashes and personal sidecars checked with an age identity"
        if audit.decrypted
        else "no: ciphertext hashes checked; plaintexts not opened"
    )
    signers_file = (
        f"<code>{_e(audit.allowed_signers, 1000)}</code><br>SHA-256 "
        f"<span class='hash'>{_e(audit.allowed_signers_sha256)}</span>"
    )
    rows = [
        ("Bucket", f"<code>{_e(audit.bucket_url, 1000)}</code>"),
        ("allowed_signers", signers_file),
        ("Audit ran", f"{_e(audit.started)} to {_e(audit.finished)} (UTC, this machine's clock)"),
        ("Tool", f"bodycam-sync {_e(audit.version)} (<code>verify</code>)"),
        ("Decryption", decryption),
        ("Objects examined", str(report.objects_seen)),
    ]
    meta = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    signers = "".join(
        f"<tr><td class='num'>K{i}</td><td>{_e(','.join(s.principals))}</td>"
        f"<td class='mono'>{_e(_fingerprint(s.key))}</td>"
        f"<td>{'any' if s.namespaces is None else _e(','.join(s.namespaces))}</td>"
        f"<td>{_e(_when(s.valid_after))}</td><td>{_e(_when(s.valid_before))}</td></tr>"
        for i, s in enumerate(audit.signers, start=1)
    )
    return (
        f"<h2>Audit</h2><table class='meta'>{meta}</table>"
        "<h3>Trusted signing keys (from allowed_signers)</h3><table><thead><tr><th>Key</th><th>Principals (docks)</th>"
        "<th>Key fingerprint</th><th>Namespaces</th><th>Valid after</th><th>Valid before</th></tr></thead>"
        f"{signers or '<tr><td colspan=6>none usable</td></tr>'}</table>"
    )


def _fingerprint(key: Ed25519PublicKey) -> str:
    from bodycam.agent.formats.sshsig import fingerprint

    return fingerprint(key)


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _key_name(report: VerifyReport, fingerprint: str | None) -> str:
    """``K1 SHA256:abcdefgh...``: the signer's number in the trusted-keys table, and its fingerprint's start."""
    if not fingerprint:
        return ""
    signers = report.audit.signers if report.audit is not None else ()
    number = next((i for i, s in enumerate(signers, start=1) if _fingerprint(s.key) == fingerprint), None)
    short = _e(fingerprint[:15]) + "\u2026"
    return f"K{number} <span class='mono'>{short}</span>" if number else f"<span class='mono'>{short}</span>"


def _batches_section(report: VerifyReport) -> Iterator[str]:
    yield (
        "<h2>Batches</h2><table><thead><tr><th>Dock</th><th>Batch, sealed (UTC)</th><th>Seq</th><th>Recordings</th>"
        "<th>Objects OK</th><th>Decrypted OK</th><th>Custody entries</th><th>Signature (key)</th><th>Problems</th>"
        "</tr></thead>"
    )
    rows = (
        f"<tr><td class='nowrap'>{_e(b.dock)}</td><td class='mono nowrap'>{_e(b.batch)}<br>{_e(_sealed(b))}"
        f"</td><td class='num'>{b.seq}</td><td class='num'>{b.recordings}</td><td class='num'>{b.objects_ok}</td>"
        f"<td class='num'>{b.plaintext_ok}</td><td class='num'>{b.custody_entries}</td>"
        f"<td class='nowrap'><span class={'ok' if b.signature_ok else 'bad'}>{'ok' if b.signature_ok else 'BAD'}</span>"
        + (f" {_key_name(report, b.signer)}" if b.signer else "")
        + (f"<br>co-signed {_key_name(report, b.cosigner)}" if b.cosigner else "")
        + f"</td><td class='num'>{b.problems}</td></tr>"
        for b in report.batches
    )
    empty = True
    for row in rows:
        empty = False
        yield row
    yield "<tr><td colspan=9>no batch found</td></tr></table>" if empty else "</table>"


# -- recordings ----------------------------------------------------------------------------------------
def _sealed(b: BatchResult) -> str:
    return "" if b.sealed_at is None else b.sealed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _recordings_section(report: VerifyReport) -> Iterator[str]:
    yield "<h2>Recordings</h2>"
    listed = False
    personal = report.audit is not None and report.audit.decrypted
    for b in report.batches.with_extra():
        recs = b.rows
        if not recs:
            continue
        rows = []
        for r in recs:
            values = [
                ("plaintext", r.plaintext_sha256),
                ("ciphertext", r.ciphertext_sha256),
                ("officer pseudonym", r.officer_pseudonym or "none"),
            ]
            if personal:
                clear = b.personal.officers.get((r.camera_serial, r.recording_id)) if b.personal is not None else None
                values.append(("officer id (clear)", clear or "none"))
            what = (
                f"<b>{_e(r.camera_serial)}</b> #{_e(r.recording_id)} ({_e(r.camera_model or 'model unknown')})<br>"
                f"exercise {_e(r.exercise_id or 'none')}, {_e(r.size)} bytes<br>"
                f"<span class='mono nowrap'>start {_e(r.start)}<br>end&nbsp;&nbsp; {_e(r.end)}</span>"
            )
            cells = (
                f"<tr class='{'first' if i == 0 else 'more'}'>"
                + (f"<td rowspan={len(values)} class='rec'>{what}</td>" if i == 0 else "")
                + f"<td class='label'>{label}</td><td class='hash'>{_e(value)}</td></tr>"
                for i, (label, value) in enumerate(values)
            )
            rows.append("<tbody>" + "".join(cells) + "</tbody>")  # one recording: kept on one page
        listed = True
        yield (
            f"<h3>Batch <code>{_e(b.batch)}</code> (dock {_e(b.dock)}, seq {b.seq}"
            f"{'' if b.signature_ok else ', signature NOT verified: values as the manifest claims'})</h3>"
            "<table class='recs'><thead><tr><th>Recording: camera, id, model, exercise, size, true start and end "
            "(UTC)</th><th colspan=2>SHA-256 (hex)</th></tr></thead>" + "".join(rows) + "</table>"
        )
    if not listed:
        yield "<p>No recordings.</p>"
    unlisted = sum(max(b.recordings - len(b.rows), 0) for b in report.batches)
    if unlisted:
        yield (
            f"<p class='note'>{counted(unlisted, 'more recording')} checked but not listed here: the report lists "
            f"at most {MAX_REPORT_ROWS:,} (see the batch table for every batch's counts, and the findings for any problem).</p>"
        )


# -- timeline --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Band:
    label: str
    start: float
    end: float
    registered: bool  # the registered window (sidecar) rather than the extent of its recordings


def _ts(value: object) -> float | None:
    when = parse_or_none(value)
    return None if when is None else when.timestamp()


_STEPS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
          2592000, 7776000, 31536000, 315360000, 3153600000)  # fmt: skip


def _ticks(lo: float, hi: float) -> tuple[int, list[float]]:
    step = next((s for s in _STEPS if (hi - lo) / s <= 8), _STEPS[-1])
    first = (int(lo) // step + 1) * step
    return step, [float(t) for t in range(first, int(hi) + 1, step)][:20]


def _tick_label(t: float, step: int) -> str:
    when = dt.datetime.fromtimestamp(t, dt.UTC)
    if step >= 86400 or (when.hour, when.minute, when.second) == (0, 0, 0):
        return when.strftime("%Y-%m-%d")  # a new day on an hourly axis is named
    return when.strftime("%H:%M:%S" if step < 60 else "%H:%M")


def _bands(report: VerifyReport, spans: Iterable[tuple[str, float, float, str]]) -> list[_Band]:
    registered: dict[str, _Band] = {}
    for b in report.batches.with_extra():
        for ex_id, start, end, site in b.personal.exercises if b.personal is not None else ():
            if len(registered) >= MAX_REPORT_ROWS:
                break  # windows of the recordings the report lists, bounded like them
            s, e = _ts(start), _ts(end)
            if s is not None and e is not None and ex_id not in registered:
                label = ex_id + (f" ({site})" if site and site != "None" else "")
                registered[ex_id] = _Band(label, s, max(e, s), True)
    extent: dict[str, tuple[float, float]] = {}
    for _, s, e, ex in spans:
        if ex and ex not in registered:
            lo, hi = extent.get(ex, (s, e))
            extent[ex] = (min(lo, s), max(hi, e))
    return list(registered.values()) + [_Band(ex, lo, hi, False) for ex, (lo, hi) in sorted(extent.items())]


def _timeline_section(report: VerifyReport) -> str:
    spans: list[tuple[str, float, float, str]] = []  # camera, start, end, exercise id
    undrawn = 0
    for b in report.batches.with_extra():
        for r in b.rows:
            s, e = _ts(r.start), _ts(r.end)
            if s is None or e is None:
                undrawn += 1
                continue
            spans.append((r.camera_serial, s, max(e, s), r.exercise_id or ""))
    head = (
        "<h2>Timeline</h2><p class='note'>Each bar is a recording at its true (clock-corrected) time, one row "
        "per camera; shaded bands are the exercise windows"
    )
    if not spans:
        return head + ".</p><p>No recordings to draw.</p>"
    bands = _bands(report, spans)
    registered = any(band.registered for band in bands)
    head += (
        " as registered (from the decrypted sidecars)" if registered else ""
    ) + (
        "; a dashed outline marks an exercise whose registered window is only in the personal sidecar: it "
        "spans that exercise's recordings" if any(not band.registered for band in bands) else ""
    ) + ". Times in UTC.</p>"  # fmt: skip
    cameras = sorted({c for c, _, _, _ in spans})
    shown = cameras[:MAX_TIMELINE_ROWS]
    lo = min([s for _, s, _, _ in spans] + [band.start for band in bands])
    hi = max([e for _, _, e, _ in spans] + [band.end for band in bands])
    pad = max((hi - lo) * 0.03, 30.0)
    lo, hi = lo - pad, hi + pad
    left, width, row, top = 150.0, 830.0, 22.0, 18.0 + 14.0 * len(bands)
    height = top + row * len(shown) + 40

    def x(t: float) -> float:
        return left + (t - lo) / (hi - lo) * width

    svg = [
        f"<svg class='tl' viewBox='0 0 1000 {height:.0f}' role='img' "
        "aria-label='timeline of recordings and exercise windows'>"
    ]
    for i, band in enumerate(bands):
        x0, x1 = x(band.start), max(x(band.end), x(band.start) + 2)
        cls = "ex" if band.registered else "ex extent"
        svg.append(
            f"<rect class='{cls}' x='{x0:.1f}' y='{top - 4:.1f}' width='{x1 - x0:.1f}' "
            f"height='{row * len(shown) + 8:.1f}'><title>{_e(band.label)}</title></rect>"
            f"<text class='exl' x='{x0 + 2:.1f}' y='{14 + 14 * i:.1f}'>{_e(band.label, 60)}</text>"
        )
    step, ticks = _ticks(lo, hi)
    base = top + row * len(shown) + 6
    for t in ticks:
        svg.append(
            f"<line class='grid' x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{top - 4:.1f}' y2='{base:.1f}'/>"
            f"<line class='axis' x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{base:.1f}' y2='{base + 5:.1f}'/>"
            f"<text x='{x(t):.1f}' y='{base + 17:.1f}' text-anchor='middle'>{_tick_label(t, step)}</text>"
        )
    svg.append(f"<line class='axis' x1='{left:.1f}' x2='{left + width:.1f}' y1='{base:.1f}' y2='{base:.1f}'/>")
    day = dt.datetime.fromtimestamp(ticks[0] if ticks else lo, dt.UTC).strftime("%Y-%m-%d")
    svg.append(f"<text x='4' y='{base + 17:.1f}'>UTC {day if step < 86400 else ''}</text>")
    rows_of = {camera: i for i, camera in enumerate(shown)}
    for camera, s, e, ex in spans:
        at = rows_of.get(camera)
        if at is None:
            continue
        y = top + row * at
        svg.append(
            f"<rect class='rec' x='{x(s):.1f}' y='{y + 4:.1f}' width='{max(x(e) - x(s), 2.0):.1f}' "
            f"height='{row - 8:.1f}'><title>{_e(camera)} {_e(ex)} "
            f"{_e(_stamp(s))} to {_e(_stamp(e))}</title></rect>"
        )
    for camera, i in rows_of.items():
        svg.append(f"<text x='4' y='{top + row * i + row / 2 + 4:.1f}'>{_e(camera, 22)}</text>")
    svg.append("</svg>")
    notes = []
    if len(cameras) > len(shown):
        more = len(cameras) - len(shown)
        notes.append(f"{counted(more, 'more camera')} not drawn (the recordings are listed below).")
    if undrawn:
        notes.append(f"{counted(undrawn, 'recording')} without a readable start and end, not drawn.")
    span_text = f"<p class='note'>From {_e(_stamp(lo + pad))} to {_e(_stamp(hi - pad))}. {' '.join(notes)}</p>"
    return head + "".join(svg) + span_text


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# -- erasures ---------------------------------------------------------------------------------------------
def _erasures_section(report: VerifyReport) -> str:
    """Objects gone from the bucket by a signed erasure entry after their retention (docs/formats.md §13):
    what was erased, under which agreements, when; not findings, but an auditor must see them."""
    erasures = report.erasures
    if not erasures:
        return ""
    rows = "".join(
        f"<tr><td><span class='key'>{_e(e.key, 1000)}</span></td><td>{_e(', '.join(e.agreements))}</td>"
        f"<td>{_e(e.erased_at)}</td><td>{_e(e.retain_until)}</td>"
        f"<td>{_e(e.custody_seq)} in <code>{_e(e.entry_batch)}</code></td></tr>"
        for e in erasures[:MAX_REPORT_ROWS]
    )
    more = len(erasures) - MAX_REPORT_ROWS
    note = f"<p class='note'>... and {more:,} more (see verify --json).</p>" if more > 0 else ""
    return (
        f"<h2>Erased under retention ({len(erasures)})</h2><p class='note'>Listed by a manifest, no longer in the "
        "bucket, and erased by a signed custody entry at or after the retain-until date the manifest signs.</p>"
        "<table><thead><tr><th>Object</th><th>Agreements</th><th>Erased (UTC)</th><th>Retained until</th>"
        f"<th>Custody entry</th></tr></thead><tbody>{rows}</tbody></table>{note}"
    )


# -- findings --------------------------------------------------------------------------------------------
def _findings_section(report: VerifyReport) -> str:
    if not report.findings:
        return "<h2>Findings</h2><p class='ok'>None: every check held.</p>"
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in report.findings:
        groups.setdefault((f.dock or "", f.batch or ""), []).append(f)
    # the batch table's order, kept only for the batches findings name (not for every batch of the run)
    order = {(b.dock, b.batch): i for i, b in enumerate(report.batches) if (b.dock, b.batch) in groups}
    out = [f"<h2>Findings ({len(report.findings)})</h2>"]
    for (dock, batch), items in sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
        title = f"Batch <code>{_e(batch)}</code> (dock {_e(dock)})" if batch else (
            f"Dock {_e(dock)}, outside any batch" if dock else "The bucket as a whole")  # fmt: skip
        out.append(f"<h3>{title}: {len(items)}</h3>")
        for f in items:
            where = f" custody entry {f.custody_seq}" if f.custody_seq is not None else ""
            key = f"<span class='key'>{_e(f.key, 1000)}</span>" if f.key else ""
            out.append(
                f"<div class='finding'><b>{_e(f.problem)}</b>{where}{key}<span>{_e(f.message, 2000)}</span></div>"
            )
    return "".join(out)
