"""`clip-audit calibrate --base ANCHOR_ID`: fit thresholds on a registered base's own variants and store them with
its registry entry; scans that choose that base (at that commit) as their anchor then decide by them."""

from __future__ import annotations

import argparse

from bot.cli.parser import add_settings_options
from bot.errors import EXIT_CLEAN, AnchorError, UsageError


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit thresholds on a registered base's own backdoored and benign variants")
    add_settings_options(p)
    p.add_argument("--base", required=True, metavar="ANCHOR_ID",
                   help="the registry entry to calibrate (owner/name or owner/name:subfolder; `clip-audit anchors "
                        "list`)")
    p.add_argument("--captions", metavar="OWNER/NAME",
                   help="a Hub dataset repo with a captions.txt (one caption per line) to train the variants on "
                        "(default: the synthetic scene captions)")
    p.add_argument("--kinds", nargs="+", metavar="KIND",
                   help="attack kinds to build (default: every text-only kind: text-on-text and zoo v2's hard "
                        "attacks)")
    p.add_argument("--per-kind", type=_count(1), default=2, help="backdoored variants per attack kind (default 2)")
    p.add_argument("--benign", type=_count(0),
                   help="benign text-only fine-tunes (default: one per backdoored variant that took)")
    p.add_argument("--steps", type=_count(1),
                   help="training steps of each attack (default: the zoo's, 100; the weak attack takes 30%%)")
    p.add_argument("--scan-steps", type=_count(1), help="inversion steps per restart (default: the detector's)")
    p.add_argument("--scan-prompts", type=_count(8),
                   help="held-out prompts of each scan's checks; the inversion samples from 5x as many (default: "
                        "the detector's)")
    p.add_argument("--landscape-grid", type=_count(3),
                   help="points per axis of each restart's loss landscape (default: the detector's)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the device setting, auto)")
    p.set_defaults(func=_cmd_calibrate)


def detector_config(args):
    """The shipped detector configuration with the scan budget the command line asks for."""
    from dataclasses import replace

    from bot.detect.amdet import DetectorConfig

    config = DetectorConfig(show_progress=not args.quiet)
    changes: dict[str, int] = {}
    if args.scan_steps is not None:
        changes["steps"] = args.scan_steps
    if args.scan_prompts is not None:
        changes.update(n_test=args.scan_prompts, n_train=5 * args.scan_prompts,
                       probe_prompts=min(config.probe_prompts, args.scan_prompts))
    if args.landscape_grid is not None:
        changes["landscape_grid"] = args.landscape_grid
    return replace(config, **changes)


def _cmd_calibrate(args) -> int:
    from bot.anchors.calibrations import save_calibration
    from bot.anchors.registry import load_registry
    from bot.anchors.selection import tower_fingerprint
    from bot.calibration.inputs import fetch_base, fetch_captions, registry_entry
    from bot.calibration.run import BaseUnderCalibration, RunSize, calibrate_base
    from bot.caption_corpus import SYNTHETIC
    from bot.cli.output import summarize_calibration
    from bot.cli.parser import settings_from_args
    from bot.encoders.load import load_text_encoder
    from bot.hub.client import HubClient
    from bot.scanning.device import select_device
    from bot.state.store import Store
    from bot.zoo.base_variants import REFERENCE_STEPS, TEXT_ONLY_ATTACKS

    settings = settings_from_args(args)
    entry = registry_entry(load_registry(settings.anchors_file), args.base)
    kinds = tuple(dict.fromkeys(args.kinds or TEXT_ONLY_ATTACKS))
    unknown = [kind for kind in kinds if kind not in TEXT_ONLY_ATTACKS]
    if unknown:
        raise UsageError(f"--kinds: {', '.join(unknown)} is not a text-only attack kind; choose among "
                         f"{', '.join(TEXT_ONLY_ATTACKS)}")
    device = select_device(settings.device)
    config = detector_config(args)
    client = HubClient.from_settings(settings)
    corpus = fetch_captions(args.captions, client=client, cache_dir=settings.cache_dir) if args.captions \
        else SYNTHETIC
    with Store(settings.db_path) as store:
        base = fetch_base(entry, client=client, store=store, settings=settings)
    encoder = load_text_encoder(base.path, device=device, subfolder=entry.subfolder,
                                max_bytes=settings.max_download_bytes)
    if tower_fingerprint(encoder) != entry.fingerprint:
        raise AnchorError(f"the weights of {entry.id} at {base.sha[:12]} are not the registered shape "
                          f"({entry.fingerprint.describe()}); `clip-audit anchors verify` checks every entry")
    size = RunSize(kinds=kinds, per_kind=args.per_kind, benign=args.benign, steps=args.steps or REFERENCE_STEPS)
    result = calibrate_base(BaseUnderCalibration(encoder=encoder, anchor_id=entry.id, sha=base.sha, pin=base.pin),
                            corpus, size=size, config=config, show_progress=not args.quiet)
    stored = save_calibration(settings.calibrations_dir, result)
    print(summarize_calibration(result, stored=stored, moved_to=base.moved_to))
    return EXIT_CLEAN
