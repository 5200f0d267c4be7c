"""Transport-neutral request/response records and the path router used by every route module."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote

from .api_errors import HubApiError, bad_request

if TYPE_CHECKING:
    from .state import EmulatorState


@dataclass(slots=True)
class Request:
    method: str
    raw_path: str
    segments: list[str]  # each path segment url-decoded on its own, so "refs%2Fpr%2F3" stays one segment
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    base_url: str  # scheme://host:port the caller used, for absolute links
    token: str | None = None
    user: str | None = None  # resolved from the token by the server

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def params(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise bad_request(f"request body is not valid JSON: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        payload = self.json()
        if not isinstance(payload, dict):
            raise bad_request("request body must be a JSON object")
        return payload


@dataclass(slots=True)
class FileBody:
    path: Path
    offset: int
    length: int


@dataclass(slots=True)
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | FileBody = b""


def json_response(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload).encode()
    return Response(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body)


def error_response(error: HubApiError) -> Response:
    headers = {"X-Error-Message": error.message, **error.headers}
    if error.code:
        headers["X-Error-Code"] = error.code
    return json_response({"error": error.message}, status=error.status, headers=headers)


Handler = Callable[["EmulatorState", Request, dict[str, str]], Response]


@dataclass(frozen=True, slots=True)
class Route:
    methods: tuple[str, ...]
    pattern: tuple[str, ...]  # literals, ":name" for one segment, "*name" for the rest of the path
    handler: Handler
    uploads: bool = False  # its body carries file contents: read up to the upload cap (limits.py), not the JSON one

    def match(self, segments: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for index, token in enumerate(self.pattern):
            if token.startswith("*"):
                rest = segments[index:]
                if not rest:
                    return None
                params[token[1:]] = "/".join(rest)
                return params
            if index >= len(segments):
                return None
            if token.startswith(":"):
                params[token[1:]] = segments[index]
            elif token != segments[index]:
                return None
        return params if len(segments) == len(self.pattern) else None


def route(methods: str, path: str, handler: Handler, *, uploads: bool = False) -> Route:
    """route("GET HEAD", "/api/models/:owner/:name", handler)."""
    return Route(tuple(methods.split()), tuple(path.strip("/").split("/")), handler, uploads)


def split_path(raw_path: str) -> list[str]:
    return [unquote(segment) for segment in raw_path.strip("/").split("/") if segment != ""]
