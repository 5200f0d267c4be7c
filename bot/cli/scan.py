"""`clip-audit scan PATH | OWNER/NAME[@REVISION]`: audit one checkpoint, a local folder or a Hub repo.

A local folder is scanned in this process. A Hub repo is scanned as the worker scans it (bot/pipeline.py): its
revision resolved to a commit sha and everything pinned to it, the download through bot/hub/ with the token from
the usual places (HF_TOKEN, the huggingface_hub login), the weights parsed in the token-free scanning child.
An existing path always wins: `clip-audit scan ./owner/name` scans the folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bot.cli.parser import add_settings_options
from bot.errors import SkipRepo, UsageError

FORMATS = ("text", "json", "sarif")


def register(sub) -> None:
    p = sub.add_parser("scan", help="scan a local checkpoint folder or a Hub repo for a textual backdoor")
    p.add_argument("target", metavar="PATH | OWNER/NAME[@REVISION]",
                   help="a local checkpoint folder (transformers, open_clip or diffusers layout), or a Hub model "
                        "repo, at a branch, tag or commit (default: main); scanned pinned to the commit")
    add_settings_options(p)
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="what goes to stdout: text, a summary for people (default); json, the scan record; sarif, "
                        "a SARIF 2.1.0 log for code-scanning dashboards. Errors go to stderr either way")
    p.add_argument("--json", type=Path, dest="json_out", metavar="FILE",
                   help="also write the scan record (JSON) to FILE")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the device setting, auto)")
    p.add_argument("--anchor", type=Path,
                   help="local scans: the clean base model folder the suspect was fine-tuned from (default: the "
                        "nearest trusted base held locally, chosen by the weights)")
    p.add_argument("--subfolder", help="local diffusers folders: which text encoder folder (default text_encoder)")
    p.add_argument("--anchor-cache", type=Path,
                   help="local scans: where locally held clean bases (the zoo) live (default: the anchor_cache "
                        "setting)")
    p.add_argument("--seed", type=int, default=0, help="local scans: the detector's random seed (default 0)")
    p.set_defaults(func=_cmd_scan)


def _cmd_scan(args) -> int:
    from bot.cli.parser import settings_from_args
    from bot.hub.ids import parse_repo_ref

    path = Path(args.target)
    if path.is_file():
        raise UsageError(f"{path} is a file; scan takes a checkpoint folder (the one holding config.json and the "
                         "safetensors weights) or a Hub repo id")
    ref = None if path.exists() else parse_repo_ref(args.target)
    if not path.exists() and ref is None:
        raise UsageError(f"{path} does not exist (and is not a Hub repo id: owner/name[@revision])")
    settings = settings_from_args(args)
    if ref is None:
        record = _scan_local(path, args, settings)
        where = path.as_posix()
    else:
        for flag, given in (("--anchor", args.anchor), ("--subfolder", args.subfolder),
                            ("--anchor-cache", args.anchor_cache)):
            if given is not None:
                raise UsageError(f"{flag} is for local folders; a Hub repo is compared with the trusted bases, "
                                 "fetched from the Hub")
        record = _scan_hub(ref, settings, quiet=args.quiet)
        where = f"{settings.endpoint}/{ref.repo_id}/tree/{record.revision}"
    if args.json_out:
        from bot.fileio import atomic_write_text

        atomic_write_text(args.json_out, record.to_json())
    _print(record, args.format, where=where)
    return record.verdict.exit_code


def _print(record, output_format: str, *, where: str) -> None:
    if output_format == "json":
        text = record.to_json()
    elif output_format == "sarif":
        import json

        from bot.cli.sarif import sarif_log

        text = json.dumps(sarif_log(record, artifact_uri=where), indent=2)
    else:
        from bot.cli.output import summarize_record

        text = summarize_record(record)
    sys.stdout.write(text + "\n")


def _scan_local(path: Path, args, settings):
    from bot.anchors.local import held_candidates
    from bot.anchors.registry import load_registry
    from bot.detect.amdet import DetectorConfig
    from bot.scanning.local import scan_path

    registry = load_registry(settings.anchors_file)
    config = DetectorConfig(seed=args.seed, show_progress=not args.quiet)
    return scan_path(path, anchor=args.anchor, device=settings.device, config=config, subfolder=args.subfolder,
                     candidates=lambda fingerprint: held_candidates(
                         registry, fingerprint, anchor_cache=settings.anchor_cache,
                         calibrations_dir=settings.calibrations_dir, cache_dir=settings.cache_dir),
                     registered=registry.ids)


def _scan_hub(ref, settings, *, quiet: bool):
    from bot.anchors.registry import load_registry
    from bot.hub.client import HubClient
    from bot.pipeline import scan_commit
    from bot.scanning.isolation import OneShotScanner
    from bot.state.store import Store

    if settings.device.startswith("cuda"):
        from bot.scanning.device import select_device

        select_device(settings.device)  # no CUDA here: a usage error now, not a failed scan after the download
    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # the downloads' bars
    client = HubClient.from_settings(settings)
    registry = load_registry(settings.anchors_file)
    try:
        sha = client.head_sha(ref.repo_id, ref.revision)
        # The state database keeps the trusted bases' first-use pins, shared with the bot's own scans.
        with Store(settings.db_path) as store:
            # A person's own scan: private and gated repos their token can read are scanned (the bot skips them).
            return scan_commit(client, ref.repo_id, sha, settings=settings, registry=registry, store=store,
                               scanner=OneShotScanner(settings), public_only=False)
    except SkipRepo as error:
        hint = "" if settings.token else " (no Hub token was found: set HF_TOKEN or run `hf auth login`)"
        raise error.for_named_repo(f"{ref} on {settings.endpoint}", hint=hint) from None
