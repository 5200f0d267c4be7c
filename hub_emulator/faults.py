"""Injected failures (rate limits, outages) so callers' retry paths can be exercised against the emulator."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .api_errors import HubApiError


@dataclass(slots=True)
class Fault:
    path_prefix: str
    status: int
    remaining: int
    method: str | None = None
    retry_after_s: int | None = None
    message: str = "Injected failure"

    def to_error(self) -> HubApiError:
        headers: dict[str, str] = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
            if self.status == 429:
                headers["RateLimit"] = f'"api";r=0;t={self.retry_after_s}'
                headers["RateLimit-Policy"] = '"fixed window";"api";q=1000;w=300'
        return HubApiError(self.status, self.message, headers=headers)


class FaultInjector:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> HubApiError | None:
        """Consumes one use of the first fault matching this request, if any."""
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix) and fault.method in (None, method):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault.to_error()
        return None
