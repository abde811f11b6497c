"""A real HTTP file server on loopback, standing in for object storage in tests and benches."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from typing import Iterator


@contextlib.contextmanager
def serve_directory(root: str) -> Iterator[tuple[str, list[str]]]:
    """Serve ``root`` over HTTP on 127.0.0.1; yields (base URL, the paths of every GET so far)."""
    served: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            served.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
