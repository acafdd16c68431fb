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


# go tool pprof -top of SeaweedFS under one upload, trimmed: a system call's kernel time is the flat time of
# linux.Syscall6, told apart by the cum of the Go function that made the call; names may end " (inline)"
PPROF_TOP = """File: weed
Type: cpu
Duration: 41.94s, Total samples = 11.68s (27.85%)
Showing nodes accounting for 10.65s, 91.18% of 11.68s total
      flat  flat%   sum%        cum   cum%
     6.31s 54.02% 54.02%      6.31s 54.02%  crypto/md5.block
     2.49s 21.32% 75.34%      2.49s 21.32%  internal/runtime/syscall/linux.Syscall6
     680ms  5.82% 81.16%      680ms  5.82%  runtime.memclrNoHeapPointers
     0.26s  2.23% 86.82%      0.26s  2.23%  hash/crc32.castagnoliSSE42Triple
         0     0% 91.18%      1.39s 11.90%  internal/poll.(*FD).Pwrite
         0     0% 91.18%      0.82s  7.02%  net.(*netFD).Read
         0     0% 91.18%      0.23s  1.97%  net.(*netFD).Write
         0     0% 91.18%      1.39s 11.90%  os.(*File).pwrite (inline)
         0     0% 91.18%      0.17s  1.46%  runtime.gcBgMarkWorker
"""


def test_seaweedfs_profile_split_reads_units_and_sorts_the_kernel_s_time_by_caller() -> None:
    """bench/seaweedfs.py's split of SeaweedFS's CPU: flat leaves (MD5, CRC, clearing), the kernel's time by
    the Go caller's cum (volume file writes, socket receives and sends), ms and s alike, and the rest is the
    total less every label, so the split adds up to what the profile sampled."""
    from bench.seaweedfs import pprof_split

    split = pprof_split(PPROF_TOP)
    assert split["total"] == 11.68
    assert split["MD5"] == 6.31
    assert abs(split["clearing fresh buffers"] - 0.68) < 1e-9  # 680ms
    assert split["CRC-32/32C"] == 0.26
    assert split["kernel: writes to the volume files"] == 1.39
    assert split["kernel: socket receives"] == 0.82
    assert split["kernel: socket sends"] == 0.23
    assert split["garbage collector"] == 0.17
    assert split["copies"] == 0.0
    assert abs(split["rest"] - (11.68 - 6.31 - 0.68 - 0.26 - 1.39 - 0.82 - 0.23 - 0.17)) < 1e-9


def test_seaweedfs_profile_split_refuses_text_that_is_not_a_pprof_listing() -> None:
    """A failed or empty `go tool pprof` must not read as a server that spent nothing."""
    import pytest

    from bench.seaweedfs import pprof_split

    with pytest.raises(ValueError, match="Total samples"):
        pprof_split("pprof: open weed.pprof: no such file or directory\n")
