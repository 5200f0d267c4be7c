"""Injected failures, so that callers' retry paths can be exercised against the emulator.

A fault matches requests by path prefix and (optionally) method, and acts on `count` of them:

- "status": the request is not handled; it is answered with `status` (429 carries Retry-After and the Hub's
  RateLimit headers when `retry_after` is given; a 5xx carries Retry-After when given);
- "drop": the request is handled, then the connection is closed after the headers and part of the body (as a
  proxy or the network failing after the Hub did the work: a client that retries a POST must not do it twice);
- "stall": the request is handled, then the response is held back `stall_s` seconds (a client without a
  timeout hangs);
- "slow": the request is handled and its response body trickles out at `bytes_per_s`.

`burst` and `gap` make a fault come back: `burst` consecutive matching requests fail, the next `gap` pass,
and so on until `count` requests have failed (a 503 burst every so often, for a load test). Each fault counts
the requests it acted on (`fired`); faults that are used up are kept, with their counts, for GET
/_emulator/faults.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from .api_errors import HubApiError

KINDS = ("status", "drop", "stall", "slow")
_SPENT_KEPT = 1000  # used-up faults listed by GET /_emulator/faults


@dataclass(slots=True)
class Fault:
    path_prefix: str
    status: int | None = None       # "status" faults: the answer given instead of handling the request
    remaining: int = 1              # requests still to act on (the spec's `count`)
    method: str | None = None       # None: any method
    retry_after_s: int | None = None
    message: str = "Injected failure"
    kind: str = "status"
    stall_s: float = 0.0            # "stall": how long the response is held back
    bytes_per_s: int = 0            # "slow": the body's pace
    drop_after_bytes: int | None = None  # "drop": body bytes sent before the connection is closed (None: half)
    burst: int = 0                  # consecutive requests acted on before `gap` pass untouched (0: no gaps)
    gap: int = 0
    id: int = 0                     # given by the injector
    fired: int = 0                  # requests acted on so far
    _streak: int = field(default=0, repr=False)   # acted on in the current burst
    _passed: int = field(default=0, repr=False)   # let through in the current gap

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if (self.kind == "status") != (self.status is not None):
            raise ValueError('a "status" fault needs a status, and only it takes one')
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be a 4xx or 5xx code")
        if self.remaining < 1 or self.burst < 0 or self.gap < 0:
            raise ValueError("count must be positive, burst and gap not negative")
        if self.kind == "stall" and not self.stall_s > 0:
            raise ValueError('a "stall" fault needs stall_s > 0')
        if self.kind == "slow" and self.bytes_per_s < 1:
            raise ValueError('a "slow" fault needs bytes_per_s >= 1')
        if self.drop_after_bytes is not None and self.drop_after_bytes < 0:
            raise ValueError("drop_after_bytes must not be negative")

    def to_error(self) -> HubApiError:
        headers: dict[str, str] = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
            if self.status == 429:
                headers["RateLimit"] = f'"api";r=0;t={self.retry_after_s}'
                headers["RateLimit-Policy"] = '"fixed window";"api";q=1000;w=300'
        return HubApiError(self.status or 500, self.message, headers=headers)

    def to_json(self) -> dict[str, Any]:
        shown = {name: value for name, value in asdict(self).items() if not name.startswith("_")}
        shown["count_left"] = shown.pop("remaining")
        return shown

    def _acts_now(self) -> bool:
        """Whether this matching request is acted on (False: it falls in a gap between bursts)."""
        if self.burst and self._streak >= self.burst:
            if self._passed < self.gap:
                self._passed += 1
                return False
            self._streak = self._passed = 0
        self._streak += 1
        self.fired += 1
        self.remaining -= 1
        return True


def _int(payload: dict[str, Any], name: str, default: int | None) -> int | None:
    value = payload.get(name, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer")
    return value


def _number(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _text(payload: dict[str, Any], name: str, default: str | None) -> str | None:
    value = payload.get(name, default)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def fault_from_spec(payload: dict[str, Any]) -> Fault:
    """A Fault from its JSON spec (the admin API's and `hub-emulator --fault`'s):

    {"kind": "status"|"drop"|"stall"|"slow" (default "status"), "path_prefix": "/api/" (default),
     "method": "GET" (default: any), "count": 1, "burst": 0, "gap": 0, "status": 503, "retry_after": 7,
     "message": "...", "stall_s": 5, "bytes_per_s": 1000, "drop_after_bytes": 10}

    Raises ValueError naming the first field that is wrong.
    """
    known = {"kind", "path_prefix", "method", "count", "burst", "gap", "status", "retry_after", "message",
             "stall_s", "bytes_per_s", "drop_after_bytes"}  # fmt: skip
    unknown = sorted(set(payload) - known)
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
    method = _text(payload, "method", None)
    return Fault(
        path_prefix=_text(payload, "path_prefix", "/api/") or "/",
        status=_int(payload, "status", None),
        remaining=_int(payload, "count", 1) or 0,
        method=method.upper() if method else None,
        retry_after_s=_int(payload, "retry_after", None),
        message=_text(payload, "message", "Injected failure") or "Injected failure",
        kind=_text(payload, "kind", "status") or "status",
        stall_s=_number(payload, "stall_s"),
        bytes_per_s=_int(payload, "bytes_per_s", 0) or 0,
        drop_after_bytes=_int(payload, "drop_after_bytes", None),
        burst=_int(payload, "burst", 0) or 0,
        gap=_int(payload, "gap", 0) or 0,
    )


@dataclass(frozen=True, slots=True)
class Injected:
    """What one request gets from the fault that matched it (a copy: the fault itself keeps counting)."""

    kind: str
    error: HubApiError | None = None  # "status"
    stall_s: float = 0.0
    bytes_per_s: int = 0
    drop_after_bytes: int | None = None


class FaultInjector:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._spent: list[Fault] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> int:
        """Arms `fault` (after those armed before: the first matching fault acts); returns its id."""
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
            return fault.id

    def clear(self) -> None:
        with self._lock:
            self._spent.extend(self._faults)
            self._faults.clear()
            del self._spent[:-_SPENT_KEPT]

    def listing(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {"active": [f.to_json() for f in self._faults], "spent": [f.to_json() for f in self._spent]}

    def take(self, method: str, path: str) -> Injected | None:
        """Consumes one use of the first fault that acts on this request, if any."""
        with self._lock:
            for fault in self._faults:
                if not path.startswith(fault.path_prefix) or fault.method not in (None, method):
                    continue
                if not fault._acts_now():
                    continue
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                    self._spent.append(fault)
                    del self._spent[:-_SPENT_KEPT]
                return Injected(kind=fault.kind, error=fault.to_error() if fault.kind == "status" else None,
                                stall_s=fault.stall_s, bytes_per_s=fault.bytes_per_s,
                                drop_after_bytes=fault.drop_after_bytes)  # fmt: skip
        return None
