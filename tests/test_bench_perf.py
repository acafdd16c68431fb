"""bench/bays.py's ``--perf`` split reads ``perf script`` as perf writes it (issue 14: the cores figure's
perf split was silently missing whenever the daemon's pids had fewer digits than perf's column)."""

from __future__ import annotations

from bench.bays import perf_samples

# perf script -F pid,tid,time,ip,dso: a 4-digit pid is padded to the column with a leading space
OUT = """ 5568/5571  100.250000:
\t    7f00deadbeef ChaCha20_8x (/venv/cryptography/hazmat/bindings/_rust.abi3.so)
\t    7f00deadbee0 encrypt_into (/venv/cryptography/hazmat/bindings/_rust.abi3.so)

 5568/5572  100.500000:
\t    ffffffff815a78e1 ([kernel.kallsyms])
\t    7f00deadbee1 [unknown] (/usr/lib/x86_64-linux-gnu/libcrypto.so.3)

12345/12346  101.000000:
\t    7f00deadbee2 _crc32c_hw_adler (/venv/crc32c/_crc32c.cpython-311-x86_64-linux-gnu.so)

 5568/5571  250.000000:
\t    7f00deadbee3 _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)
"""


def test_samples_of_short_and_long_pids_are_counted_by_their_leaf_within_the_window() -> None:
    """Each sample counts once, by its leaf frame only (never by a caller's), whether its pid was padded
    or not; samples outside the measured window are left out (before: the padded pids' samples were read
    as call-chain lines and nothing of pid 5568 was counted)."""
    assert perf_samples(OUT, (100.0, 200.0)) == {
        ("5568", "5571"): {"ChaCha20-Poly1305": 1},
        ("5568", "5572"): {"kernel": 1},
        ("12345", "12346"): {"CRC-32C": 1},
    }
