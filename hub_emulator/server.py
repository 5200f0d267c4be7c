"""The HTTP server: stdlib ThreadingHTTPServer speaking HTTP/1.1, plus helpers to run it blocking or in a thread."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import secrets
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from .api_errors import HubApiError
from .dispatch import accepts_upload, check_admin, dispatch, is_admin_path
from .faults import Injected
from .http_types import FileBody, Request, Response, error_response, split_path
from .limits import MAX_CHUNK_LINE_BYTES, MAX_JSON_BODY_BYTES, MAX_UPLOAD_BODY_BYTES
from .seed import seed_from_file
from .state import EmulatorState
from .webhooks import (
    DEFAULT_BACKOFF_S,
    DEFAULT_DELIVERY_TIMEOUT_S,
    DEFAULT_MAX_ATTEMPTS,
    WebhookConfig,
    WebhookDispatcher,
)

logger = logging.getLogger(__name__)

_HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_STREAM_CHUNK = 1024 * 1024
_SLOW_TICKS_PER_S = 10  # a "slow" fault writes its body in this many pieces a second
ADMIN_TOKEN_FILE = "admin-token"  # under data_dir: where a generated admin token is written (mode 0600)


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
    webhook_max_attempts: int = DEFAULT_MAX_ATTEMPTS
    webhook_backoff_s: float = DEFAULT_BACKOFF_S  # before the 2nd attempt; doubled for each one after
    webhook_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S
    # The admin routes always need a token: None generates one, written to data_dir/admin-token (mode 0600).
    admin_token: str | None = field(default=None, repr=False)
    seed_file: Path | None = None
    list_page_size: int = 1000
    discussion_page_size: int = 50
    max_upload_bytes: int = MAX_UPLOAD_BODY_BYTES  # bodies of routes that carry files (commits, admin seeding)
    max_json_bytes: int = MAX_JSON_BODY_BYTES      # every other body


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: EmulatorConfig, state: EmulatorState) -> None:
        self.config = config
        self.state = state
        self.stopping = threading.Event()  # ends the stalls of "stall" faults when the server stops
        super().__init__((config.host, config.port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that goes away (killed, or closing a kept-alive connection while a stall held it) is not the
        # emulator's error: no traceback for it. Anything else is printed as the stdlib server does.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, TimeoutError)):
            logger.debug("client %s went away", client_address)
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

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

    def _refuse(self, status: int, message: str) -> None:
        """Answers without reading the rest of the body; the connection cannot be reused after that."""
        self.close_connection = True
        self._send(Response(status, {"Content-Type": "text/plain"}, message.encode()))

    def _read_body(self, limit: int) -> bytes | None:
        """The request body, counted while it is read; None after answering 413 (over `limit`) or 400."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        declared = self.headers.get("Content-Length") or "0"
        if not declared.strip().isdigit():
            self._refuse(400, "invalid Content-Length")
            return None
        length = int(declared)
        if length > limit:
            self._refuse(413, "request body too large")
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self, limit: int) -> bytes | None:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(MAX_CHUNK_LINE_BYTES + 1)
            size_text = line.split(b";")[0].strip()
            if len(line) > MAX_CHUNK_LINE_BYTES or not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
                self._refuse(400, "malformed chunked body")
                return None
            size = int(size_text, 16)
            if size == 0:
                while self.rfile.readline(MAX_CHUNK_LINE_BYTES + 1) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > limit:  # checked before the chunk is read: a chunk may claim any size
                self._refuse(413, "request body too large")
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(MAX_CHUNK_LINE_BYTES + 1)

    def _base_url(self) -> str:
        host = self.headers.get("Host", "")
        return f"http://{host}" if _HOST_HEADER.match(host) else self.server.url

    def _handle(self) -> None:
        config, state = self.server.config, self.server.state
        raw_path, _, query_string = self.path.partition("?")
        segments = split_path(raw_path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        admin = is_admin_path(segments)
        if admin:
            try:  # before the body is read: without the token, not one byte of it is
                check_admin(headers, config.admin_token)
            except HubApiError as error:
                self.close_connection = True
                self._send(error_response(error))
                return
        body = self._read_body(config.max_upload_bytes if accepts_upload(self.command, segments)
                               else config.max_json_bytes)  # fmt: skip
        if body is None:
            return
        request = Request(method=self.command, raw_path=raw_path, segments=segments,
                          query=parse_qs(query_string, keep_blank_values=True), headers=headers, body=body,
                          base_url=self._base_url())  # fmt: skip
        injected = None if admin else state.faults.take(self.command, raw_path)
        if injected is not None and injected.error is not None:
            self._send(error_response(injected.error))
            return
        self._send(dispatch(state, request, admin_token=config.admin_token), injected)

    def _send(self, response: Response, injected: Injected | None = None) -> None:
        if injected is not None and injected.kind == "stall" and self.server.stopping.wait(injected.stall_s):
            self.close_connection = True
            return
        try:
            self._write_response(response, injected)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout during a stall or trickle)
            self.close_connection = True

    def _write_response(self, response: Response, injected: Injected | None) -> None:
        length = response.body.length if isinstance(response.body, FileBody) else len(response.body)
        limit = 0 if self.command == "HEAD" else length
        if injected is not None and injected.kind == "drop":
            self.close_connection = True
            cut = limit // 2 if injected.drop_after_bytes is None else injected.drop_after_bytes
            if cut >= limit:  # nothing of the body to hold back (a HEAD, an empty body): no answer at all
                return
            limit = cut  # the full length is promised; the client gets part of it, then the connection ends
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if "Content-Length" not in response.headers:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        pace = injected.bytes_per_s if injected is not None and injected.kind == "slow" else 0
        sent = 0
        for piece in self._pieces(response.body, limit, max(1, pace // _SLOW_TICKS_PER_S) if pace else _STREAM_CHUNK):
            self.wfile.write(piece)
            sent += len(piece)
            if pace and sent < limit and self.server.stopping.wait(len(piece) / pace):
                self.close_connection = True
                return
        self.wfile.flush()

    @staticmethod
    def _pieces(body: bytes | FileBody, limit: int, size: int) -> Iterator[bytes]:
        """The first `limit` bytes of the body, `size` bytes at a time."""
        if not isinstance(body, FileBody):
            for start in range(0, limit, size):
                yield body[start : min(start + size, limit)]
            return
        with open(body.path, "rb") as handle:
            handle.seek(body.offset)
            remaining = min(limit, body.length)
            while remaining > 0:
                chunk = handle.read(min(size, remaining))
                if not chunk:
                    break
                yield chunk
                remaining -= len(chunk)


def build_state(config: EmulatorConfig) -> EmulatorState:
    webhooks = None
    if config.webhook_url:
        webhooks = WebhookDispatcher(
            WebhookConfig(url=config.webhook_url, secret=config.webhook_secret, watched=config.webhook_watch,
                          max_attempts=config.webhook_max_attempts, backoff_s=config.webhook_backoff_s,
                          timeout_s=config.webhook_timeout_s)
        )
    state = EmulatorState(
        config.data_dir,
        tokens=config.tokens,
        webhooks=webhooks,
        list_page_size=config.list_page_size,
        discussion_page_size=config.discussion_page_size,
    )
    return state


def admin_token_path(data_dir: Path) -> Path:
    return Path(data_dir) / ADMIN_TOKEN_FILE


def _with_admin_token(config: EmulatorConfig) -> EmulatorConfig:
    """The config with an admin token: the one given, or a new one written to data_dir/admin-token for the
    caller (a test fixture, the demo) to read; only its owner may read that file."""
    if config.admin_token:
        return config
    token = secrets.token_urlsafe(24)
    path = admin_token_path(config.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a token left from an earlier run is replaced, never appended to
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    return dataclasses.replace(config, admin_token=token)


def create_server(config: EmulatorConfig, state: EmulatorState | None = None) -> EmulatorServer:
    """Binds the socket (so the port is known) and wires state.public_url; seeds if a seed file is configured.
    Without an admin token in `config`, one is generated (see _with_admin_token); server.config holds it."""
    config = _with_admin_token(config)
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

    @property
    def admin_token(self) -> str:
        return self.server.config.admin_token or ""

    def stop(self) -> None:
        self.server.stopping.set()
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
        server.stopping.set()
        server.server_close()
        if server.state.webhooks is not None:
            server.state.webhooks.close()
