"""A scanning child for tests/test_isolation.py: the real bot.scanning.child (its network guard, memory limit,
protocols and error mapping) with only the scan replaced, by one that misbehaves as the model's name says:

- "*/hang": starts a grandchild that sleeps (its pid written to $SCAN_CHILDREN_PID_FILE when set), then sleeps
  itself far past any test's timeout;
- "*/hog": allocates memory (never touched, so the machine is not actually filled) until the allocator refuses;
- "*/dial-PORT": connects to 127.0.0.1:PORT;
- anything else: a clean record at once.

Run as `python tests/scan_children.py [child arguments]`, in place of `python -m bot.scanning.child`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import bot.scanning.local
from bot.errors import CheckpointError
from bot.scanning import child

GIB = 1024**3
HOG_GIVES_UP_BYTES = 256 * GIB  # without a working limit the hog stops here (address space only) and reports it


def misbehaving_scan(path, *, model_name=None, revision=None, **_ignored):
    from records import make_record

    kind = (model_name or "").split("/")[-1]
    if kind == "hang":
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        if os.environ.get("SCAN_CHILDREN_PID_FILE"):
            with open(os.environ["SCAN_CHILDREN_PID_FILE"], "w", encoding="utf-8") as handle:
                handle.write(str(sleeper.pid))
        time.sleep(3600)
    if kind == "hog":
        import torch

        held, total = [], 0
        while total < HOG_GIVES_UP_BYTES:
            held.append(torch.empty(GIB // 4, dtype=torch.uint8))  # uninitialised: address space, no pages
            total += GIB // 4
        raise CheckpointError(f"allocated {total} bytes without reaching a limit")
    if kind.startswith("dial-"):
        try:
            socket.create_connection(("127.0.0.1", int(kind.removeprefix("dial-"))), timeout=5).close()
        except OSError as error:
            raise CheckpointError(f"no connection: {error}") from None
        raise CheckpointError("connected to the network")
    return make_record("clean", model=model_name, revision=revision)


if __name__ == "__main__":
    bot.scanning.local.scan_path = misbehaving_scan  # child.run imports it from the module at each scan
    sys.exit(child.main())
