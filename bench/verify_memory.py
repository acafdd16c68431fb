"""What `bodycam-sync verify` keeps per batch for the whole run: the figure ``BATCH_COST`` is set from.

For each of two numbers of batches, a file bucket of one dock's chain of that many validly signed
batches (``tests/hostile.py``: format 1.1 commitments, 3 custody entries each, no recordings, batch ids
as the dock makes them) is verified in this process, one reader, no ``--report`` rows, under
tracemalloc. A snapshot is taken when the listing is done, before the checks across batches (what is
kept then is what grows with the bucket); pathlib's interned path parts are left out (a file bucket's
memory, not verify's). The figure is the difference between the two runs over the difference in batches.

By default every summary stays in memory (the figure ``BATCH_COST`` is charged from); ``--spill`` makes
verify spill them to its temporary database from the first batch (agent/audit/batchstore.py), as it does
past ``Limits.batch_bytes``: what it then holds a batch is what stays bounded whatever the bucket holds.

    .venv/bin/python bench/verify_memory.py [--batches 1000,4000] [--rows] [--spill] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ holds the hostile bucket builder

from bodycam.agent.audit import verify as v  # noqa: E402
from bodycam.agent.audit.batchstore import BatchStore  # noqa: E402
from bodycam.agent.formats.sshsig import parse_allowed_signers  # noqa: E402
from bodycam.agent.storage.bucket import open_bucket  # noqa: E402
from tests import hostile  # noqa: E402

EXCLUDE = [tracemalloc.Filter(False, "*pathlib.py")]


class _Measured(v.Verifier):
    """A Verifier that notes the traced bytes when the listing is done."""

    kept = 0

    def _finish(self, store: BatchStore[v.BatchResult]) -> None:
        snap = tracemalloc.take_snapshot().filter_traces(EXCLUDE)
        self.kept = sum(stat.size for stat in snap.statistics("filename"))
        super()._finish(store)


def kept_bytes(batches: int, rows: bool, spill: bool = False) -> int:
    """Traced bytes verify holds at the end of the listing of a bucket of ``batches`` batches."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bucket"
        built = hostile.build(root, batches=batches, commitments=True)
        signers = parse_allowed_signers(built.allowed_signers.read_text())
        gc.collect()
        tracemalloc.start()
        try:
            verifier = _Measured(
                open_bucket(root.as_uri()), signers, limits=v.Limits(4096), workers=1, batch_budget=0 if spill else None
            )
            verifier.keep_rows = rows
            report = verifier.run()
        finally:
            tracemalloc.stop()
        with report:
            # the synthetic dock has format 1.1 manifests but no transparency log: that one finding only
            unexpected = [f for f in report.findings if f.problem != "log_missing"]
            if unexpected or len(report.batches) != batches or report.batches.spilled is not spill:
                raise SystemExit(f"the check run found {unexpected[:3]}: nothing measured")
        return verifier.kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1000,4000", help="two numbers of batches (default 1000,4000)")
    parser.add_argument("--rows", action="store_true", help="keep report rows (as verify --report does)")
    parser.add_argument("--spill", action="store_true", help="spill the summaries from the first batch")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    low, high = (int(n) for n in args.batches.split(","))
    a, b = kept_bytes(low, args.rows, args.spill), kept_bytes(high, args.rows, args.spill)
    result = {
        "spilled": args.spill,
        "batches": [low, high],
        "kept_bytes": [a, b],
        "bytes_per_batch": round((b - a) / (high - low)),
        "batch_cost": v.BATCH_COST,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{low} batches: {a} B kept; {high}: {b} B; {result['bytes_per_batch']} B a batch"
            f"{' (spilled)' if args.spill else ''} (BATCH_COST {v.BATCH_COST})"
        )


if __name__ == "__main__":
    main()
