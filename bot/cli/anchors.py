"""`clip-audit anchors list|add|verify`: the trusted bases a suspect may be compared with."""

from __future__ import annotations

from bot.cli.parser import add_settings_options, settings_from_args, subcommands
from bot.errors import EXIT_CLEAN, EXIT_ERROR, ClipAuditError, SkipRepo, UsageError


def register(sub) -> None:
    p = sub.add_parser("anchors", help="the registry of trusted clean bases (anchors)")
    asub = subcommands(p, "anchors_command")
    ls = asub.add_parser("list", help="every registered base, its fingerprint, its pin and its calibrations")
    add_settings_options(ls)
    ls.set_defaults(func=_cmd_list)
    add = asub.add_parser("add", help="register a base from the Hub in the operator's file (anchors_file setting)")
    add_settings_options(add)
    add.add_argument("repo_id", help="owner/name of the base on the Hub")
    add.add_argument("--subfolder", help="the text encoder's folder in a diffusers repo (e.g. text_encoder)")
    add.add_argument("--sha", help="the reviewed commit to pin (default: the repo's head now)")
    add.add_argument("--note", default="", help="what this base is, for people reading the registry")
    add.set_defaults(func=_cmd_add)
    verify = asub.add_parser("verify", help="check every base on the Hub: still at its pin, still its fingerprint")
    add_settings_options(verify)
    verify.set_defaults(func=_cmd_verify)


def _pin_text(entry, store) -> str:
    if entry.sha:
        return f"{entry.sha[:12]} (registry)"
    pin = store.anchor_pin(entry.id) if store is not None else None
    return f"{pin.sha[:12]} (first use)" if pin else "pinned on first use"


def _open_store(settings):
    from bot.state.store import Store

    return Store(settings.db_path) if settings.db_path.is_file() else None


def _cmd_list(args) -> int:
    from bot.anchors.calibrations import stored_calibrations
    from bot.anchors.registry import load_registry
    from bot.cli.output import table

    settings = settings_from_args(args)
    registry = load_registry(settings.anchors_file)
    store = _open_store(settings)
    rows = []
    for entry in registry.entries:
        fp = entry.fingerprint
        calibrated = ", ".join(c.sha[:12] for c in stored_calibrations(settings.calibrations_dir, entry.id))
        rows.append([entry.id, fp.family, f"{fp.hidden}x{fp.layers} v{fp.vocab} p{fp.positions}",
                     _pin_text(entry, store), calibrated or "-", entry.source])
    print(table(["anchor", "family", "shape", "pin", "calibrated at", "source"], rows))
    return EXIT_CLEAN


def _cmd_add(args) -> int:
    from bot.anchors.registry import AnchorEntry, add_entry
    from bot.hub.client import HubClient
    from bot.hub.families import plan_scan
    from bot.hub.ids import is_commit_sha, is_safe_repo_id

    settings = settings_from_args(args)
    if not is_safe_repo_id(args.repo_id):
        raise UsageError(f"{args.repo_id!r} is not a Hub repo id (owner/name)")
    if args.sha is not None and not is_commit_sha(args.sha):
        raise UsageError(f"--sha {args.sha!r} is not a full 40-hex commit sha")
    client = HubClient.from_settings(settings)
    try:
        plan = plan_scan(client, args.repo_id, sha=args.sha, max_bytes=settings.max_download_bytes)
    except SkipRepo as error:  # a base must be public: others are to compare with it and reproduce its reports
        raise error.for_named_repo(f"{args.repo_id} on {settings.endpoint}") from None
    folder = args.subfolder or ""
    if folder not in plan.text_encoders:
        found = ", ".join(f or "(the repo root)" for f in plan.text_encoders)
        raise UsageError(f"{args.repo_id} has no text tower in {folder or 'the repo root'}; it has: {found}")
    fingerprint = plan.fingerprints[plan.text_encoders.index(folder)]
    if fingerprint is None:
        raise ClipAuditError(f"cannot tell the shape of {args.repo_id}'s text tower from its weights "
                             "(token and position embeddings and numbered layers)")
    entry = AnchorEntry(repo_id=args.repo_id, subfolder=args.subfolder, fingerprint=fingerprint, heads=None,
                        sha=plan.sha, note=args.note, source=str(settings.anchors_file))  # fmt: skip
    add_entry(settings.anchors_file, entry)
    print(f"registered {entry.id} at {plan.sha} ({fingerprint.describe()}) in {settings.anchors_file}")
    return EXIT_CLEAN


def _cmd_verify(args) -> int:
    from bot.anchors.registry import load_registry
    from bot.cli.output import table
    from bot.hub.client import HubClient
    from bot.hub.families import plan_scan

    settings = settings_from_args(args)
    registry = load_registry(settings.anchors_file)
    store = _open_store(settings)
    client = HubClient.from_settings(settings)
    rows, problems = [], 0
    for entry in registry.entries:
        first_use = store.anchor_pin(entry.id) if store is not None and not entry.sha else None
        pinned = entry.sha or (first_use.sha if first_use else None)
        try:
            head = client.head_sha(entry.repo_id)
            plan = plan_scan(client, entry.repo_id, sha=pinned or head, max_bytes=settings.max_download_bytes)
        except (SkipRepo, ClipAuditError) as error:
            problems += 1
            rows.append([entry.id, _pin_text(entry, store), "-", f"unreachable: {str(error)[:80]}"])
            continue
        folder = entry.subfolder or ""
        shape = plan.fingerprints[plan.text_encoders.index(folder)] if folder in plan.text_encoders else None
        status = []
        if pinned and head != pinned:
            status.append(f"moved to {head[:12]}: the pin is kept")
        if shape != entry.fingerprint:
            status.append("the weights do not have the registered shape")
        problems += bool(status)
        rows.append([entry.id, _pin_text(entry, store), head[:12], "; ".join(status) or "ok"])
    print(table(["anchor", "pin", "head", "status"], rows))
    return EXIT_ERROR if problems else EXIT_CLEAN
