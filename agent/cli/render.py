"""How results read on a terminal: the verify table, the bays' lines, why footage stayed on the camera."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import click

from bodycam.agent.audit.wording import counted

if TYPE_CHECKING:
    from bodycam.agent.audit.verify import VerifyReport

STAYED_WORDS = {
    "operational": "tagged operational",
    "no_exercise": "no exercise for this camera",
    "outside_window": "outside every window",
    "clock_unplaceable": "clock not placeable",
    "no_agreement": "covered by no data-sharing agreement",
}


def stayed_text(doc: Mapping[str, object]) -> str | None:
    """``stayed on the camera: 2 tagged operational, 1 outside every window (nearest EX-1: ends 14 min after it
    closes)`` from a camera's ``out_of_scope_reasons`` and ``nearest_window``; None if none stayed."""
    from bodycam.agent.pipeline.policy import Miss

    reasons = doc.get("out_of_scope_reasons")
    if not isinstance(reasons, dict):
        reasons = {}
    parts = []
    for code, words in STAYED_WORDS.items():
        count = int(reasons.get(code, 0))
        if not count:
            continue
        text = f"{count} {words}"
        near = doc.get("nearest_window")
        if code == "outside_window" and isinstance(near, dict) and near:
            text += f" ({Miss(near['exercise'], float(near['off_by_s']), near['side']).describe()})"
        parts.append(text)
    parts += [f"{n} {code}" for code, n in sorted(reasons.items()) if code not in STAYED_WORDS and n]
    return "stayed on the camera: " + ", ".join(parts) if parts else None


def _number(doc: Mapping[str, object], key: str) -> float:
    """A count or a rate the daemon sent; 0 when it sent none (null)."""
    value = doc.get(key)
    return value if isinstance(value, int | float) else 0


def bay_line(bay: Mapping[str, object]) -> str:
    from bodycam.agent.cli.progress import _fmt_bytes, _fmt_eta, bar

    total = _number(bay, "bytes_total")
    done = _number(bay, "bytes_done")
    line = f"{bay['camera']:<14} {bay['state']:<8} {bay['address']:<28}"
    if total:  # the daemon sends a total only for a transfer that runs or was cut short
        line += f" [{bar(done / total, 20)}] {_fmt_bytes(done)}/{_fmt_bytes(total)}"
    rate = _number(bay, "rate_bytes_per_s")
    if rate:  # and a speed only while it runs
        line += f" {_fmt_bytes(rate)}/s ETA {_fmt_eta(_number(bay, 'eta_s'))}"
    if bay.get("recording") is not None:
        line += f" rec #{bay['recording']}"
    verified = int(_number(bay, "verified"))
    if verified:  # what moved: a synced bay's line said nothing of it, only what stayed
        line += f"  {verified} recording{'' if verified == 1 else 's'} verified in the bucket since docked"
    if bay.get("note"):
        line += f"  ({bay['note']})"
    if bay.get("last_error"):
        line += f"  last error: {bay['last_error']}"
    return line


def shown(text: str) -> str:
    """``text`` from a bucket (object keys, values a manifest names) as a terminal may print it: control
    and format characters (escape sequences, carriage returns, newlines, bidi overrides) escaped, so a
    key cannot hide a FAILED line or print a VERIFIED one of its own. --json carries the exact text."""
    if all(ch.isprintable() for ch in text):
        return text
    return "".join(ch if ch.isprintable() or unicodedata.category(ch) == "Zs" else ascii(ch)[1:-1] for ch in text)


def print_verify(report: VerifyReport) -> None:
    header = ("DOCK", "BATCH", "SEQ", "RECORDINGS", "OBJECTS OK", "DECRYPTED OK", "CUSTODY", "SIGNATURE", "PROBLEMS")

    def rows() -> Iterator[tuple[str, ...]]:
        yield header
        for b in report.batches:
            yield (
                shown(b.dock),
                shown(b.batch),
                str(b.seq),
                str(b.recordings),
                str(b.objects_ok),
                str(b.plaintext_ok),
                str(b.custody_entries),
                "ok" if b.signature_ok else "BAD",
                str(b.problems),
            )

    # two passes over the batches (they may be in verify's temporary database): the widths, then the lines
    widths = [0] * len(header)
    for r in rows():
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    for r in rows():
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for f in report.findings:
        where = ", ".join(
            f"{k} {v}"
            for k, v in (("batch", f.batch), ("key", f.key), ("custody entry", f.custody_seq))
            if v is not None
        )
        click.echo(shown(f"PROBLEM {f.problem}: {f.message}" + (f" [{where}]" if where else "")))
    erasures = report.erasures
    for e in erasures:  # the agreements and the batch are the bucket's text too: the whole line escaped
        click.echo(
            shown(
                f"ERASED {e.key}: under agreement {', '.join(e.agreements) or '?'} at {e.erased_at} (retained "
                f"until {e.retain_until}; custody entry {e.custody_seq} in batch {e.entry_batch})"
            )
        )
    if report.ok and report.audit is not None and report.audit.decrypted:
        listed = sum(b.recordings for b in report.batches) - len(erasures)
        opened = sum(b.plaintext_ok for b in report.batches)
        if opened < listed:  # not a problem by itself: with agreements, a party's key opens only its share
            click.echo(
                f"the identity opened {opened} of {counted(listed, 'recording')}: the others are not encrypted to it "
                "(another party's share, or not a key of this bucket); their ciphertext was checked"
            )
    if report.ok:
        erased = f", {len(erasures)} erased under their agreements' retention" if erasures else ""
        batches, objects = counted(len(report.batches), "batch", "batches"), counted(report.objects_seen, "object")
        click.echo(f"VERIFIED: {batches}, {objects}{erased}, no problems")
    else:
        problems = counted(len(report.findings), "problem")
        click.echo(f"FAILED: {problems} in {counted(report.objects_seen, 'object')}")


def iso(ts: float) -> str:
    from bodycam.agent.formats.times import iso_utc

    return iso_utc(ts)


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
