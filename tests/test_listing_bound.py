"""A camera cannot hold its bay (or an ``ingest --once`` run, and with it the seal of every other camera's
verified footage) with a listing that never quite ends (review of the camera side). Each LIST page has its
deadline, and a camera may answer fewer entries than asked; a camera answering one entry a page, each just
in time, stretched a listing of 65,535 recordings over days. The whole listing now has a deadline of the
READ rule's kind (docs/protocol.md, LIST). Real parts: the virtual camera over USB/IP and a pty.
"""

from __future__ import annotations

import pytest

from bodycam.drivers.errors import LinkTimeoutError
from bodycam.drivers.virtual.faults import Faults

from .sims import MEDIA, bounded, serve, spec

KiB = 1024


@pytest.mark.parametrize("medium", MEDIA)
def test_a_listing_of_one_entry_pages_each_in_time_is_refused_in_bounded_time(medium: str) -> None:
    """200 recordings, one a page, each page 0.1 s late: every page is in time (1 s), the listing takes
    20 s. Before the fix it was taken whatever it took (65,535 recordings at 4.9 s a page: 89 hours);
    now it is a LinkTimeoutError once the whole listing's deadline (2 s + 200 entries at 512 KiB/s) passed."""
    faults = Faults(list_trickle_ms=100)
    with serve(medium, spec("SIM-LIST1", faults, recordings=200, training=0, size=KiB)) as sim:
        with sim.connect(timeout=1.0) as cam:
            cam.open()
            cam.authenticate(sim.enrolled_key)
            err = bounded(cam.recordings, "the listing")
    assert isinstance(err, LinkTimeoutError), err
    assert "listed" in str(err) and "of 200 recordings" in str(err), err


@pytest.mark.parametrize("medium", MEDIA)
def test_an_honest_camera_lists_many_recordings_in_small_pages(medium: str) -> None:
    """The bound refuses no camera that answers promptly: 600 recordings, listed in ten pages."""
    with serve(medium, spec("SIM-LIST2", Faults(list_trickle_ms=0), recordings=600, training=0, size=KiB)) as sim:
        with sim.connect(timeout=1.0) as cam:
            cam.open()
            cam.authenticate(sim.enrolled_key)
            assert len(cam.recordings()) == 600
