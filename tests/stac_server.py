"""A tiny STAC API on 127.0.0.1 for the tests: landing page, conformance, /search.

Serves a fixed list of items; ``/search`` (GET and POST) filters them by
``collections``, ``bbox`` and ``datetime`` like a real API, so pystac-client's
own search code runs against it. :class:`SilentServer` and
:class:`TrickleServer` are catalogs that never answer, or answer a byte at a
time, for the timeout tests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CONFORMS_TO = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
]


def _parse_dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _matches(item: dict, params: dict) -> bool:
    cols = params.get("collections")
    if cols and item.get("collection") not in cols:
        return False
    bbox = params.get("bbox")
    if bbox:
        w, s, e, n = bbox
        iw, is_, ie, in_ = item["bbox"]
        if iw > e or ie < w or is_ > n or in_ < s:
            return False
    when = params.get("datetime")
    if when:
        start, _, end = when.partition("/")
        t = _parse_dt(item["properties"]["datetime"])
        if start not in ("", "..") and t < _parse_dt(start):
            return False
        if end not in ("", "..") and t > _parse_dt(end):
            return False
    return True


class StacServer:
    """Start with ``with StacServer(items) as url: ...``."""

    def __init__(self, items: list[dict], *, delay: float = 0.0):
        self.items, self.delay = items, delay
        self.requests: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, body: dict) -> None:
                time.sleep(server.delay)
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                if url.path in ("", "/"):
                    return self._send(server.landing())
                if url.path == "/search":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    params = {
                        "collections": q["collections"].split(",") if "collections" in q else None,
                        "bbox": [float(v) for v in q["bbox"].split(",")] if "bbox" in q else None,
                        "datetime": q.get("datetime"),
                    }
                    return self._send(server.search("GET", params))
                self.send_error(404)
                return None

            def do_POST(self):
                if urlparse(self.path).path != "/search":
                    self.send_error(404)
                    return None
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                return self._send(server.search("POST", body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def landing(self) -> dict:
        return {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "test-api",
            "description": "A STAC API for the xflipnslide tests",
            "conformsTo": CONFORMS_TO,
            "links": [
                {"rel": "self", "href": self.url + "/", "type": "application/json"},
                {"rel": "root", "href": self.url + "/", "type": "application/json"},
                {
                    "rel": "search",
                    "href": self.url + "/search",
                    "type": "application/geo+json",
                    "method": "GET",
                },
                {
                    "rel": "search",
                    "href": self.url + "/search",
                    "type": "application/geo+json",
                    "method": "POST",
                },
            ],
        }

    def search(self, method: str, params: dict) -> dict:
        self.requests.append((method, params))
        found = [i for i in self.items if _matches(i, params)]
        return {"type": "FeatureCollection", "features": found, "links": []}

    def __enter__(self) -> str:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers.

    ``with SilentServer() as url: ...``; ``connections`` counts the
    connections made (each retry of a client opens one)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    @property
    def connections(self) -> int:
        return len(self.conns)

    def _accept(self) -> None:
        try:
            while True:
                conn = self.sock.accept()[0]
                self.conns.append(conn)
                self._serve(conn)
        except OSError:  # closed on exit
            pass

    def _serve(self, conn: socket.socket) -> None:
        """Say nothing."""

    def __enter__(self) -> str:
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


class TrickleServer(SilentServer):
    """Answers every connection one byte per ``period`` seconds, forever:
    each byte comes well within any socket timeout, the answer never ends.

    ``head=True`` trickles from the status line on; ``head=False`` sends the
    status line and headers at once and trickles the body."""

    def __init__(self, period: float = 0.5, *, head: bool = True):
        super().__init__()
        self.period, self.head = period, head

    def _serve(self, conn: socket.socket) -> None:
        threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
        )
        try:
            if not self.head:
                conn.sendall(head)
                head = b""
            data = head + b"{" + b" " * 999_999
            for k in range(len(data)):
                if self.stop.wait(self.period):
                    return
                conn.sendall(data[k : k + 1])
        except OSError:  # the client gave up, or the server closed
            pass


__all__ = ["SilentServer", "StacServer", "TrickleServer", "timezone"]
