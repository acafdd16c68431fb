"""``bodycam-sync disclosures``: per party, what was disclosed, under which agreement, when, with hashes.

The report a data protection officer hands to the ICO (DPA 2018 s.62: disclosures with their date, time,
recipients and who made them). It is read from the bucket the way ``verify`` reads it (the same
:class:`~bodycam.agent.audit.verify.Verifier`: signatures, custody chains, the disclosure entries against
the signed manifests, each finding named) but without hashing every footage object, which is
``verify``'s job. Rows go to a temporary SQLite file as they are found and are written out from it
sorted by party and time, so memory stays within ``--max-memory`` whatever the bucket holds.

Formats (docs/formats.md §10.4): JSON (one document, streamed), CSV (one row per party, disclosure and
agreement) and a self-contained HTML page (inline CSS, no script, nothing fetched) that prints on A4.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO, TypedDict

from bodycam.agent.audit.disclosures import MAX_TEXT, Disclosure
from bodycam.agent.audit.verify import BatchResult, Verifier, VerifyReport, run_verify
from bodycam.agent.formats.times import parse_or_none
from bodycam.drivers.errors import ConfigError

FORMAT = "bodycam-disclosures/1"

CSV_COLUMNS = (
    "party",
    "time",
    "object",
    "camera_serial",
    "recording_id",
    "data_items",
    "key",
    "ciphertext_sha256",
    "plaintext_sha256",
    "agreement_id",
    "agreement_version",
    "agreement_sha256",
    "actor",
    "dock",
    "batch",
    "custody_seq",
    "manifest_sha256",
    "manifest_signature",
)


class Header(TypedDict):
    """What the report says of itself and of the check it ran, before its rows."""

    format: str
    generated: str
    bucket: str | None
    allowed_signers_sha256: str | None
    agent_version: str | None
    filter: dict[str, str | None]
    checked: bool
    batches: int
    findings: list[dict[str, object]]


class AgreementJSON(TypedDict):
    id: str
    version: int
    sha256: str


class Row(TypedDict):
    """One disclosure to one party, as the report writes it (JSON, CSV, HTML) and the CLI summarises it."""

    time: str
    object: str  # "recording" or "sidecar"
    camera_serial: str | None
    recording_id: int | None
    data_items: list[str] | None  # a sidecar's
    key: str
    ciphertext_sha256: str
    plaintext_sha256: str | None
    agreements: list[AgreementJSON]
    actor: str
    dock: str
    batch: str
    custody_seq: int
    manifest_sha256: str | None
    manifest_signature: str


@dataclass(frozen=True, slots=True)
class Filter:
    party: str | None = None
    start: dt.datetime | None = None  # disclosures at or after
    end: dt.datetime | None = None  # disclosures at or before

    def admits(self, party: str, when: dt.datetime | None) -> bool:
        if self.party is not None and party != self.party:
            return False
        if when is None:
            return self.start is None and self.end is None
        return (self.start is None or when >= self.start) and (self.end is None or when <= self.end)

    def to_json(self) -> dict[str, str | None]:
        return {"party": self.party, "from": _iso(self.start), "to": _iso(self.end)}


def parse_time(text: str, option: str) -> dt.datetime:
    """An ISO 8601 time or date for ``--from``/``--to`` (UTC when it names no zone)."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-03-01 or 2026-03-01T10:00:00Z)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _when(ts: str) -> dt.datetime | None:
    return parse_or_none(ts, MAX_TEXT)  # an entry's values are already cut to MAX_TEXT


class Spool:
    """The report's rows in a temporary SQLite file: one row per (party, disclosure)."""

    def __init__(self, where: Path, chosen: Filter) -> None:
        self.filter = chosen
        self.db = sqlite3.connect(where / "disclosures.sqlite")
        self.db.execute("CREATE TABLE rows(party TEXT, ts TEXT, dock TEXT, batch TEXT, seq INTEGER, row TEXT)")
        self.count = 0

    def add(self, batch: BatchResult, d: Disclosure, plaintext_sha256: str | None) -> None:
        """Verifier's ``on_disclosure``: one row for each party the entry names that the filter admits."""
        when = _when(d.ts)
        for party in d.parties:
            if not self.filter.admits(party, when):
                continue
            row: Row = {
                "time": d.ts,
                "object": "sidecar" if d.sidecar else "recording",
                "camera_serial": d.camera,
                "recording_id": d.recording,
                "data_items": list(d.data_items) if d.sidecar else None,
                "key": d.key,
                "ciphertext_sha256": d.ciphertext_sha256,
                "plaintext_sha256": None if d.sidecar else plaintext_sha256,
                "agreements": [{"id": i, "version": v, "sha256": s} for i, v, s in d.agreements_of(party)],
                "actor": d.actor,
                "dock": batch.dock,
                "batch": batch.batch,
                "custody_seq": d.seq,
                "manifest_sha256": batch.manifest_sha256,
                "manifest_signature": "verified" if batch.signature_ok else "NOT VERIFIED",
            }
            self.db.execute(
                "INSERT INTO rows VALUES(?,?,?,?,?,?)",
                (party, d.ts, batch.dock, batch.batch, d.seq, json.dumps(row, sort_keys=True)),
            )
            self.count += 1

    def parties(self) -> Iterator[tuple[str, int]]:
        yield from self.db.execute("SELECT party, COUNT(*) FROM rows GROUP BY party ORDER BY party")

    def rows(self, party: str) -> Iterator[Row]:
        for (text,) in self.db.execute("SELECT row FROM rows WHERE party=? ORDER BY ts, dock, seq", (party,)):
            row: Row = json.loads(text)  # written by add() above
            yield row

    def close(self) -> None:
        self.db.close()


@dataclass
class DisclosureReport:
    spool: Spool
    verify: VerifyReport
    filter: Filter
    generated: str

    @property
    def ok(self) -> bool:
        return self.verify.ok

    def header(self) -> Header:
        audit = self.verify.audit
        return {
            "format": FORMAT,
            "generated": self.generated,
            "bucket": audit.bucket_url if audit else None,
            "allowed_signers_sha256": audit.allowed_signers_sha256 if audit else None,
            "agent_version": audit.version if audit else None,
            "filter": self.filter.to_json(),
            "checked": self.verify.ok,
            "batches": len(self.verify.batches),
            "findings": [asdict(f) for f in self.verify.findings],
        }


def run_report(
    bucket_url: str,
    endpoint_url: str | None,
    allowed_signers: Path,
    max_memory_mib: int,
    chosen: Filter,
    workdir: Path,
) -> DisclosureReport:
    """Read the bucket like ``verify`` (without hashing footage) and spool its disclosures.

    Raises ConfigError as :func:`~bodycam.agent.audit.verify.run_verify` does."""
    spool = Spool(workdir, chosen)

    def configure(verifier: Verifier) -> None:
        verifier.on_disclosure = spool.add
        verifier.check_objects = False

    generated = _iso(dt.datetime.now(dt.UTC)) or ""
    report = run_verify(
        bucket_url,
        endpoint_url,
        allowed_signers,
        None,
        (),
        max_memory_mib,
        configure=configure,
        report_rows=False,
        work_dir=workdir,
    )  # its report lists disclosures, not recordings
    report.close()  # of the batch summaries (spilled, past a budget, into workdir) only their number is reported
    return DisclosureReport(spool, report, chosen, generated)


def open_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bodycam-disclosures-")


# -- output ----------------------------------------------------------------------------------------
def write_json(report: DisclosureReport, out: TextIO) -> None:
    """One JSON document, written as it is read from the spool (never whole in memory)."""
    head = report.header()
    out.write(json.dumps(head, sort_keys=True)[:-1] + ',"parties":[')
    for n, (party, count) in enumerate(report.spool.parties()):
        out.write(("," if n else "") + json.dumps({"party": party, "count": count})[:-1] + ',"disclosures":[')
        for m, row in enumerate(report.spool.rows(party)):
            out.write(("," if m else "") + json.dumps(row, sort_keys=True))
        out.write("]}")
    out.write("]}\n")


def write_csv(report: DisclosureReport, out: TextIO) -> None:
    """RFC 4180 CSV with a header line: one row per party, disclosure and agreement."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for party, _count in report.spool.parties():
        for row in report.spool.rows(party):
            refs: list[AgreementJSON | None] = [*row["agreements"]] or [None]  # a row without one: blank
            for ref in refs:
                values = {
                    **row,
                    "party": party,
                    "data_items": " ".join(row["data_items"] or []),
                    "agreement_id": "" if ref is None else ref["id"],
                    "agreement_version": "" if ref is None else ref["version"],
                    "agreement_sha256": "" if ref is None else ref["sha256"],
                }
                writer.writerow(["" if values.get(c) is None else values[c] for c in CSV_COLUMNS])


STYLE = """
@page{size:A4;margin:12mm 11mm 14mm 11mm}
body{font-family:"DejaVu Sans",system-ui,sans-serif;margin:2em;color:#111;font-size:10pt;line-height:1.3}
h1{font-size:16pt;margin:0 0 .3em}h2{font-size:12.5pt;margin:1.2em 0 .4em;border-bottom:1px solid #999}
table{border-collapse:collapse;margin:.4em 0 1em;width:100%}
td,th{border:1px solid #aaa;padding:.2em .4em;text-align:left;vertical-align:top}
th{background:#eee}thead{display:table-header-group}tr{break-inside:avoid}
.hash{font-family:"DejaVu Sans Mono",monospace;font-size:7.5pt;white-space:nowrap}
table.d tbody{break-inside:avoid}table.d tr.first td{border-top:1.5px solid #555}
table.d tr.more td{border-top:1px dotted #ccc}table.d td.label{white-space:nowrap;color:#333;width:1%}
.meta th{width:13em;background:#f4f4f4}.ok{color:#060;font-weight:bold}.bad{color:#a00;font-weight:bold}
.finding{border-left:4px solid #a00;padding:.2em .6em;margin:.3em 0;break-inside:avoid}
.note{color:#444;font-size:9pt}
@media print{body{margin:0;font-size:8.5pt}.hash{font-size:7pt}h2{break-after:avoid}}
"""


def _e(value: object, limit: int = 300) -> str:
    text = "" if value is None else str(value)
    return html.escape(text[:limit] + ("..." if len(text) > limit else ""), quote=True)


def write_html(report: DisclosureReport, out: TextIO) -> None:
    """A self-contained page: who received what, under which agreement, when, with hashes."""
    head = report.header()
    w = out.write
    w("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>")
    w(f"<title>Disclosure log (DPA 2018 s.62)</title><style>{STYLE}</style></head><body>\n")
    w("<h1>Disclosure log (DPA 2018 s.62)</h1>\n")
    w("<p class='note'>Every disclosure of body-worn video and its personal data to a party under a "
      "data-sharing agreement, read from the evidence bucket's custody logs and checked against the "
      "dock-signed manifests.</p>\n")  # fmt: skip
    verdict = "CHECKED: the disclosure log matches the signed manifests" if report.ok else "PROBLEMS FOUND"
    w(f"<p class='{'ok' if report.ok else 'bad'}'>{verdict}</p>\n<table class='meta'>")
    chosen = head["filter"]
    for label, value in (
        ("Bucket", head["bucket"]),
        ("Generated", head["generated"]),
        ("allowed_signers SHA-256", head["allowed_signers_sha256"]),
        ("Tool version", head["agent_version"]),
        ("Party", chosen["party"] or "all"),
        ("From", chosen["from"] or "the start"),
        ("To", chosen["to"] or "now"),
        ("Batches read", head["batches"]),
    ):
        w(f"<tr><th>{_e(label)}</th><td>{_e(value)}</td></tr>")
    w("</table>\n")
    if head["findings"]:
        w(f"<h2>Findings ({len(head['findings'])})</h2>\n")
        for f in head["findings"]:
            w(f"<div class='finding'><b>{_e(f.get('problem'))}</b> {_e(f.get('message'), 1000)}</div>\n")
    parties = list(report.spool.parties())
    if not parties:
        w("<p>No disclosures in this period.</p>\n")
    for party, count in parties:
        w(f"<h2>Party: {_e(party)} ({count} disclosure{'s' if count != 1 else ''})</h2>\n<table class='d'>\n")
        for row in report.spool.rows(party):
            _html_row(w, row)
        w("</table>\n")
    w("</body></html>\n")


def _html_row(w: Callable[[str], int], row: Row) -> None:
    """One disclosure as a block of label/value lines: hashes stay whole on one line, in print too."""
    if row["object"] == "sidecar":
        what = f"Personal data sidecar: {_e(', '.join(row['data_items'] or []) or 'no items')}"
    else:
        what = f"Recording {_e(row['camera_serial'])} #{_e(row['recording_id'])}"
    lines = [
        ("Time (UTC)", f"<b>{_e(row['time'])}</b>"),
        ("Disclosed", what),
        ("Object", f"<span class='hash'>{_e(row['key'])}</span>"),
    ]
    for a in row["agreements"]:
        lines.append(("Agreement", f"{_e(a['id'])} v{_e(a['version'])} <span class='hash'>{_e(a['sha256'])}</span>"))
    lines.append(("Object SHA-256", f"<span class='hash'>{_e(row['ciphertext_sha256'])}</span>"))
    if row["plaintext_sha256"]:
        lines.append(("Footage SHA-256", f"<span class='hash'>{_e(row['plaintext_sha256'])}</span>"))
    lines.append(
        (
            "Logged",
            f"by {_e(row['actor'])}, custody entry {_e(row['custody_seq'])} of {_e(row['dock'])} batch "
            f"{_e(row['batch'])}; manifest signature {_e(row['manifest_signature'])}",
        )
    )
    w("<tbody>")
    for n, (label, value) in enumerate(lines):
        w(f"<tr class='{'first' if n == 0 else 'more'}'><td class='label'>{label}</td><td>{value}</td></tr>")
    w("</tbody>\n")
