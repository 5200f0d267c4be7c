"""A tiny static file server for a built site, bound to 127.0.0.1 only: for previewing, and for tests.

Publishing is a copy of the built directory to any static host; this server is not meant for the internet.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class _SiteHandler(SimpleHTTPRequestHandler):
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".html": "text/html; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".json": "application/json",
        ".svg": "image/svg+xml",
        ".png": "image/png",
    }

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def list_directory(self, path):  # a directory without index.html is not browsable
        self.send_error(404, "Not Found")
        return None

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.debug("site server: " + format, *args)


class SiteServer:
    """Serves `directory` on 127.0.0.1 in a background thread; use as a context manager, or call close()."""

    def __init__(self, directory: Path, *, port: int = 0) -> None:
        self.directory = Path(directory).resolve()
        if not self.directory.is_dir():
            raise FileNotFoundError(f"no site directory at {self.directory}")
        handler = partial(_SiteHandler, directory=str(self.directory))
        self._server = ThreadingHTTPServer((HOST, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="site-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SiteServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_forever(directory: Path, *, port: int = 8000, stop: threading.Event | None = None) -> None:
    """Serves until interrupted (Ctrl-C) or until `stop` is set."""
    with SiteServer(directory, port=port) as server:
        print(f"serving {server.directory} at {server.url} (Ctrl-C stops)", flush=True)
        (stop or threading.Event()).wait()
