"""The HTTP server: stdlib ThreadingHTTPServer speaking HTTP/1.1, plus helpers to run it blocking or in a thread."""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from .dispatch import dispatch
from .http_types import FileBody, Request, Response, split_path
from .seed import seed_from_file
from .state import EmulatorState
from .webhooks import WebhookConfig, WebhookDispatcher

logger = logging.getLogger(__name__)

_HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_STREAM_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    # Secrets stay out of repr() so that logging a config never leaks them.
    tokens: Mapping[str, str] = field(default_factory=dict, repr=False)  # token -> user name
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_watch: tuple[str, ...] = ()  # repo ids / owners; empty = all
    admin_token: str | None = field(default=None, repr=False)
    seed_file: Path | None = None
    list_page_size: int = 1000
    discussion_page_size: int = 50
    max_body_bytes: int = 4 * 1024**3


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: EmulatorConfig, state: EmulatorState) -> None:
        self.config = config
        self.state = state
        super().__init__((config.host, config.port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, keep-alive clients stall ~40 ms per request.
    disable_nagle_algorithm = True
    server: EmulatorServer

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        # The request line carries no credentials; headers (Authorization) are never logged.
        logger.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 413 for an oversized one."""
        limit = self.server.config.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > limit:
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = limit + 1
            if 0 <= length <= limit:
                return self.rfile.read(length) if length else b""
        self.close_connection = True
        self._send(Response(413, {"Content-Type": "text/plain"}, b"request body too large"))
        return None

    def _base_url(self) -> str:
        host = self.headers.get("Host", "")
        return f"http://{host}" if _HOST_HEADER.match(host) else self.server.url

    def _handle(self) -> None:
        raw_path, _, query_string = self.path.partition("?")
        body = self._read_body()
        if body is None:
            return
        request = Request(
            method=self.command,
            raw_path=raw_path,
            segments=split_path(raw_path),
            query=parse_qs(query_string, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            base_url=self._base_url(),
        )
        self._send(dispatch(self.server.state, request, admin_token=self.server.config.admin_token))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if isinstance(response.body, FileBody):
            if "Content-Length" not in response.headers:
                self.send_header("Content-Length", str(response.body.length))
        else:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if isinstance(response.body, FileBody):
            self._stream(response.body)
        else:
            self.wfile.write(response.body)

    def _stream(self, body: FileBody) -> None:
        with open(body.path, "rb") as handle:
            handle.seek(body.offset)
            remaining = body.length
            while remaining > 0:
                chunk = handle.read(min(_STREAM_CHUNK, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


def build_state(config: EmulatorConfig) -> EmulatorState:
    webhooks = None
    if config.webhook_url:
        webhooks = WebhookDispatcher(
            WebhookConfig(url=config.webhook_url, secret=config.webhook_secret, watched=config.webhook_watch)
        )
    state = EmulatorState(
        config.data_dir,
        tokens=config.tokens,
        webhooks=webhooks,
        list_page_size=config.list_page_size,
        discussion_page_size=config.discussion_page_size,
    )
    return state


def create_server(config: EmulatorConfig, state: EmulatorState | None = None) -> EmulatorServer:
    """Binds the socket (so the port is known) and wires state.public_url; seeds if a seed file is configured."""
    try:
        if not ipaddress.ip_address(config.host).is_loopback:
            logger.warning("hub emulator listening on non-loopback address %s", config.host)
    except ValueError:
        if config.host != "localhost":
            logger.warning("hub emulator listening on %s", config.host)
    state = state if state is not None else build_state(config)
    server = EmulatorServer(config, state)
    state.public_url = server.url
    if config.seed_file is not None:
        try:
            created = seed_from_file(state, config.seed_file)
        except BaseException:
            server.server_close()
            if state.webhooks is not None:
                state.webhooks.close()
            raise
        logger.info("seeded %d repo(s) from %s", len(created), config.seed_file)
    return server


@dataclass(slots=True)
class EmulatorHandle:
    url: str
    state: EmulatorState
    server: EmulatorServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        if self.state.webhooks is not None:
            self.state.webhooks.close()

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_in_thread(config: EmulatorConfig, *, state: EmulatorState | None = None) -> EmulatorHandle:
    """Starts serving on a daemon thread; returns once the socket is bound. Call .stop() (or use `with`)."""
    server = create_server(config, state)
    # A short poll interval keeps stop() fast; shutdown() waits for the serve loop to notice.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-emulator", daemon=True
    )
    thread.start()
    return EmulatorHandle(url=server.url, state=server.state, server=server, thread=thread)


def serve_until_interrupted(server: EmulatorServer, *, ready: threading.Event | None = None) -> None:
    """Serves until Ctrl-C, then releases the socket and the webhook sender."""
    logger.info("hub emulator serving %s from %s", server.url, server.config.data_dir)
    if ready is not None:
        ready.set()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if server.state.webhooks is not None:
            server.state.webhooks.close()
