"""`clip-audit scan PATH`: audit one local checkpoint directory."""

from __future__ import annotations

from pathlib import Path

from bot.errors import UsageError


def register(sub) -> None:
    p = sub.add_parser("scan", help="scan a local checkpoint directory for a textual backdoor")
    p.add_argument("path", type=Path, help="checkpoint directory (transformers, open_clip or diffusers layout)")
    p.add_argument("--anchor", type=Path, help="clean base model directory the suspect was fine-tuned from")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--json", type=Path, dest="json_out", help="write the scan record (JSON) here")
    p.add_argument("--subfolder", help="diffusers: which text encoder folder (default text_encoder)")
    p.add_argument("--anchor-cache", type=Path,
                   help="where locally held clean bases (the zoo) live (default: the anchor_cache setting)")
    p.add_argument("--config", type=Path, help="TOML settings file (default ./clip-audit.toml when present)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_scan)


def _cmd_scan(args) -> int:
    from bot.anchors.local import held_candidates
    from bot.anchors.registry import load_registry
    from bot.cli.output import summarize_record
    from bot.cli.parser import settings_from_args
    from bot.detect.amdet import DetectorConfig
    from bot.fileio import atomic_write_text
    from bot.scanning.local import scan_path

    if not args.path.exists():
        raise UsageError(f"{args.path} does not exist")
    settings = settings_from_args(args)
    registry = load_registry(settings.anchors_file)
    config = DetectorConfig(seed=args.seed, show_progress=not args.quiet)
    record = scan_path(args.path, anchor=args.anchor, device=args.device, config=config, subfolder=args.subfolder,
                       candidates=lambda fingerprint: held_candidates(
                           registry, fingerprint, anchor_cache=settings.anchor_cache,
                           calibrations_dir=settings.calibrations_dir, cache_dir=settings.cache_dir),
                       registered=registry.ids)
    if args.json_out:
        atomic_write_text(args.json_out, record.to_json())
    print(summarize_record(record))
    return record.verdict.exit_code
