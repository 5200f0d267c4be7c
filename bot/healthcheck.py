"""The container's health probe, the Dockerfile's HEALTHCHECK: `python -m bot.healthcheck`; exit 0 healthy, 1 not.

One image runs every command, and only `serve` answers HTTP. In a container whose command is `serve` the probe
asks GET /health on the port serve listens on (its --port, else the webhook_port setting); a container running
anything else (watch, a worker) has nothing to ask and passes: that its process is alive is all Docker can see.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

# The container's first process: clip-audit itself, or an init (docker run --init) with clip-audit's arguments.
CONTAINER_COMMAND = Path("/proc/1/cmdline")
TIMEOUT_SECONDS = 5.0


def serve_port(argv: Sequence[str]) -> int | None:
    """The port `clip-audit serve` listens on, from its command line; None when the command is not serve."""
    args = list(argv)
    if "serve" not in args or "site" in args:  # `site serve` is a local preview, not the webhook server
        return None
    if "--port" in args[:-1]:
        return int(args[args.index("--port") + 1])
    given = [arg for arg in args if arg.startswith("--port=")]
    if given:
        return int(given[-1].removeprefix("--port="))
    from bot.settings import load_settings

    return load_settings(stored_token=lambda: None).webhook_port


def probe(argv: Sequence[str]) -> tuple[bool, str]:
    """(healthy, why) for a container whose first process has the arguments `argv`."""
    port = serve_port(argv)
    if port is None:
        return True, "not a serve container: nothing to ask"
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - loopback only
            return response.status == 200, f"{url}: {response.status}"
    except (urllib.error.URLError, OSError) as error:
        return False, f"{url}: {error}"


def main() -> int:
    argv = [part.decode("utf-8", "replace") for part in CONTAINER_COMMAND.read_bytes().split(b"\0") if part]
    healthy, why = probe(argv)
    print(why)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
