"""load_stac's timeout bounds the whole search: retries, slow and trickling
catalogs included. Every call runs in a guard thread, so a hang fails the
test instead of blocking the suite."""

from __future__ import annotations

import threading
import time

import odc.stac  # noqa: F401  (the io extra, which the tests install)
import pystac_client  # noqa: F401
import pytest
from stac_server import SilentServer, StacServer, TrickleServer

import xflipnslide
from xflipnslide import InvalidParameterError
from xflipnslide.io import CatalogError

#: Seconds a guarded call may take before the test calls it a hang.
GUARD = 30.0


def guarded(fn, **kwargs):
    """``(seconds taken, exception raised)`` of ``fn(**kwargs)``; fails the
    test when the call is still running after ``GUARD`` seconds."""
    out: dict = {}

    def run():
        t0 = time.monotonic()
        try:
            out["value"] = fn(**kwargs)
        except BaseException as exc:
            out["error"] = exc
        out["took"] = time.monotonic() - t0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(GUARD)
    if thread.is_alive():
        pytest.fail(f"the call was still running after {GUARD} s: it hangs")
    return out["took"], out.get("error")


def search(url, timeout):
    return dict(
        fn=xflipnslide.load_stac,
        bbox=(0, 0, 1, 1),
        datetime="2020",
        catalog=url,
        sign=False,
        timeout=timeout,
    )


def test_silent_catalog_fails_within_the_timeout_without_retries():
    """Before: pystac-client retried 5 times, each waiting the timeout again
    (timeout=2 took 12 s; the default 30 s took 181 s)."""
    with SilentServer() as url:
        took, error = guarded(**search(url, 2))
    assert isinstance(error, CatalogError), error
    assert 1.5 < took < 3.5, took
    assert "could not be searched within timeout=2.0 s" in str(error)


def test_silent_catalog_is_asked_once():
    server = SilentServer()
    with server as url:
        guarded(**search(url, 1))
        time.sleep(0.3)  # a retry, if one were made, would connect now
        assert server.connections == 1


@pytest.mark.parametrize("head", [True, False], ids=["status-line", "body"])
def test_trickling_catalog_fails_within_the_timeout(head):
    """One byte per 0.5 s is within any socket timeout: before, the search
    waited for the whole answer, forever."""
    with TrickleServer(0.5, head=head) as url:
        took, error = guarded(**search(url, 2))
    assert isinstance(error, CatalogError), error
    assert took < 3.5, took
    assert "within timeout=2.0 s" in str(error)


def test_a_slow_catalog_answering_in_time_still_searches():
    from stac_items import make_item

    items = [make_item("77")]
    with StacServer([i.to_dict() for i in items], delay=0.3) as url:
        took, error = guarded(
            fn=xflipnslide.load_stac,
            bbox=items[0].bbox,
            datetime="2020-05",
            collections=["landsat-test"],
            bands=["red"],
            catalog=url,
            sign=False,
            timeout=10,
        )
    assert error is None, error
    assert took < 10


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "30", True, None])
def test_timeout_must_be_a_positive_number(timeout):
    with pytest.raises(InvalidParameterError, match="timeout must be a positive number"):
        xflipnslide.load_stac(bbox=(0, 0, 1, 1), catalog="http://127.0.0.1:9", timeout=timeout)
