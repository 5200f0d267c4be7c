"""The scanning child process (started by bot/scanning/isolation.py): parses untrusted weights, holds no token.

It reads the suspect, the candidate bases the parent fetched (a JSON list of bot.anchors.selection.LocalBase),
chooses the anchor by the weights, scans, and writes the record; its exit code is the verdict's, an error's
plus CHILD_FAILURE_OFFSET, or CHILD_OUT_OF_MEMORY. Started with `--serve` it stays resident and takes one scan
after another (isolation.ResidentScanner), keeping its imports and the last bases it loaded.

Before it reads any weights it shuts itself off from the network (`forbid_network`) and, on the CPU, caps its
address space (`limit_memory`); the parent enforces the wall-clock limit.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
from collections import OrderedDict
from pathlib import Path

from bot.errors import CHILD_FAILURE_OFFSET, CHILD_OUT_OF_MEMORY, EXIT_ERROR, ClipAuditError

# Audit events (PEP 578) for Python-level network use: a connection, a datagram, a name lookup.
_SOCKET_SENDS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_NAME_LOOKUPS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                           "socket.gethostbyaddr", "socket.getnameinfo"})  # fmt: skip


def forbid_network() -> None:
    """Makes every outbound connection, datagram and name lookup made through Python's socket module in this
    process fail with PermissionError (huggingface_hub, urllib, requests and httpx all go through it).

    It is an audit hook, which nothing in the process can remove once it is added. Unix-domain sockets stay
    usable (local IPC, never the network). Native code that opens sockets without Python is not covered:
    the environment's offline switches and dead proxies (isolation.child_environment) are all that meets it.
    """

    def hook(event: str, args: tuple) -> None:
        if not event.startswith("socket."):
            return
        if event in _SOCKET_SENDS:
            if getattr(args[0], "family", None) == socket.AF_UNIX:
                return
            raise PermissionError(errno.EACCES, f"the scanning child may not use the network ({event})")
        if event in _NAME_LOOKUPS:
            raise PermissionError(errno.EACCES, f"the scanning child may not use the network ({event})")

    sys.addaudithook(hook)


def limit_memory(limit_bytes: int, device: str) -> str:
    """Caps this process's address space (RLIMIT_AS) at `limit_bytes` when it scans on the CPU; returns what
    was done, for the log.

    Not on CUDA: the CUDA driver reserves virtual address space on the scale of the GPU's and the host's
    memory when it starts, which an address-space limit refuses; a GPU worker relies on the wall-clock
    limit and on the host's own memory controls (a container's limit). Called after torch is imported (the
    imports are ours and map ~3.3 GB) and before any weights are read.
    """
    import resource

    import torch

    if limit_bytes <= 0:
        return "no memory limit (scan_memory_bytes = 0)"
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "no address-space limit on CUDA"
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)  # an unprivileged process may only lower its hard limit
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return f"address space limited to {limit_bytes} bytes"


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation that failed: Python's MemoryError, torch's CPU allocator or CUDA
    running out, or a memory map the kernel refused."""
    if isinstance(error, MemoryError):
        return True
    if isinstance(error, OSError) and error.errno == errno.ENOMEM:
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def read_anchors(path: Path | None) -> tuple[list, list[str]]:
    """(the fetched candidate bases, every registry id) from the file isolation.py wrote."""
    from bot.anchors.selection import LocalBase

    if path is None:
        return [], []
    data = json.loads(path.read_text())
    bases = [LocalBase.from_dict(item) for item in data["candidates"]]
    return bases, list(data["registered"])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bot.scanning.child")
    p.add_argument("path", type=Path)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--anchors", type=Path,
                   help="JSON: the registered bases fetched for this scan, and every registry id")
    p.add_argument("--model-name")
    p.add_argument("--revision")
    p.add_argument("--subfolder")
    p.add_argument("--max-bytes", type=int)
    p.add_argument("--memory-limit", type=int, default=0, help="RLIMIT_AS in bytes on the CPU; 0: none")
    return p


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bot.scanning.child --serve")
    p.add_argument("--serve", action="store_true", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--memory-limit", type=int, default=0, help="RLIMIT_AS in bytes on the CPU; 0: none")
    return p


class AnchorCache:
    """The last few bases loaded, kept between the scans of one resident child: a worker scanning fine-tunes
    of one base loads it once. Keyed by path (snapshots are stored by commit sha, so a path's content does
    not change under it), subfolder and commit; the device and size cap are the child's own, fixed for its life."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._loaded: OrderedDict[tuple, object] = OrderedDict()

    def __call__(self, base, load):
        key = (str(Path(base.path).resolve()), base.subfolder, base.sha)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        encoder = load(base)
        self._loaded[key] = encoder
        while len(self._loaded) > self.size:
            self._loaded.popitem(last=False)
        return encoder


def run(argv: list[str], *, anchor_cache: AnchorCache | None = None) -> int:
    """One scan, as the command line `argv` asks; returns the exit code (the verdict's, or an error's plus
    CHILD_FAILURE_OFFSET)."""
    args = _parser().parse_args(argv)
    from bot.detect.amdet import DetectorConfig
    from bot.fileio import atomic_write_text
    from bot.scanning.local import scan_path

    try:
        fetched, registered = read_anchors(args.anchors)  # the parent chose them by the header fingerprint
        record = scan_path(args.path, candidates=lambda _: fetched, registered=registered, device=args.device,
                           config=DetectorConfig(show_progress=False), model_name=args.model_name,
                           revision=args.revision, subfolder=args.subfolder, max_bytes=args.max_bytes,
                           anchor_cache=anchor_cache)
    except ClipAuditError as exc:
        print(f"scan failed: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code + CHILD_FAILURE_OFFSET  # never read as a verdict: the parent reports the failure
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        print(f"scan failed: out of memory ({type(exc).__name__}: {str(exc)[:200]})", file=sys.stderr, flush=True)
        return CHILD_OUT_OF_MEMORY
    atomic_write_text(args.json, record.to_json())
    return record.verdict.exit_code


def serve() -> int:
    """The resident child (isolation.ResidentScanner): first one line {"ready": true} once it is started,
    then one JSON request per stdin line, {"argv": [...]} as for a one-shot child, and one JSON reply per
    stdout line, {"exit": code, "fatal": bool}. Ends at EOF (the parent went away) or after an unexpected
    error, whose state it does not trust; the parent starts a fresh one."""
    import traceback

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever else prints (a library's warning) goes to stderr, never into the replies
    cache = AnchorCache()
    import bot.detect.amdet  # noqa: F401 - what every scan imports, imported before "ready"
    import bot.scanning.local  # noqa: F401

    # The parent's wall-clock limit is for scans: starting Python and importing torch is not counted in it.
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        try:
            code = run(list(json.loads(line)["argv"]), anchor_cache=cache)
        except Exception:  # noqa: BLE001 - reported to the parent, then this process ends
            traceback.print_exc(file=sys.stderr)
            replies.write(json.dumps({"exit": EXIT_ERROR + CHILD_FAILURE_OFFSET, "fatal": True}) + "\n")
            replies.flush()
            return 1
        # After running out of memory the process is not trusted with the next scan (a half-built model, a
        # fragmented heap): the parent replaces it.
        replies.write(json.dumps({"exit": code, "fatal": code == CHILD_OUT_OF_MEMORY}) + "\n")
        replies.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    forbid_network()  # first: nothing this process runs may reach the network
    argv = sys.argv[1:] if argv is None else argv
    serving = argv[:1] == ["--serve"]
    options = (_serve_parser() if serving else _parser()).parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    print(f"scanning child: {limit_memory(options.memory_limit, options.device)}", file=sys.stderr, flush=True)
    return serve() if serving else run(argv)


if __name__ == "__main__":
    sys.exit(main())
