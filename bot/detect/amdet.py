"""AMDET, end to end: invert, check, filter natural backdoors, explain, decide.

    detector = Amdet(DetectorConfig())
    record = detector.scan(suspect, anchor)
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from bot import __version__
from bot.detect.checks import HeldOutStats, decide, feature_checks, held_out_stats, landscape_check
from bot.detect.features import PromptBatch, prepare
from bot.detect.inversion import InversionRun, Objective, invert
from bot.detect.landscape import loss_landscape
from bot.detect.prompt_bank import prompt_bank, split
from bot.detect.record import RECORD_VERSION, CheckResult, ScanRecord
from bot.detect.thresholds import Thresholds, for_family
from bot.detect.trigger import recover_target, recover_triggers
from bot.device import autocast, describe
from bot.encoders.text_encoder import TextEncoder


@dataclass(frozen=True)
class DetectorConfig:
    """Every knob of a scan. Defaults are the ones the benchmark in docs/benchmarks.md ran with."""

    k: int = 1                       # pseudo-tokens inserted after BOS
    n_train: int = 1000              # prompts the inversion samples from
    n_test: int = 200                # held-out prompts for the checks
    batch_size: int = 16
    steps: int = 300                 # max Adam steps per restart
    restarts: int = 2                # random restarts; stop at the first that passes the checks
    lr: float = 8e-2
    weight_decay: float = 1e-5
    beta: float = 0.1
    gamma: float = 0.1
    patience: int = 60               # stop a restart when the running loss stalls this long
    seed: int = 0
    landscape_grid: int = 15
    landscape_radius: float = 0.5    # grid half-width, as a fraction of |v|
    landscape_prompts: int = 8
    always_landscape: bool = False   # benchmarks: compute it even when a feature check fails
    trigger_candidates: int = 8
    target_captions: int = 5
    show_progress: bool = True


def _versions() -> dict[str, str]:
    import huggingface_hub
    import transformers

    return {"clip-audit-bot": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "huggingface_hub": huggingface_hub.__version__, "python": platform.python_version()}


class Amdet:
    def __init__(self, config: DetectorConfig | None = None, *, thresholds: Thresholds | None = None) -> None:
        self.config = config or DetectorConfig()
        self.thresholds = thresholds

    def scan(self, suspect: TextEncoder, anchor: TextEncoder | None, *, model: str | None = None,
             revision: str | None = None, anchor_name: str | None = None) -> ScanRecord:
        cfg = self.config
        th = self.thresholds or for_family(suspect.family)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        device = suspect.device
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        notes: list[str] = []
        if anchor is not None and anchor.family != suspect.family:
            notes.append(f"anchor family {anchor.family} differs from suspect family {suspect.family}")

        t0 = time.perf_counter()
        bank = prompt_bank()
        train_prompts, test_prompts = split(bank, n_train=cfg.n_train, n_test=cfg.n_test)
        with autocast(device):
            train = prepare(suspect, anchor, train_prompts, k=cfg.k)
            test = prepare(suspect, anchor, test_prompts, k=cfg.k)
        timings["prepare"] = time.perf_counter() - t0

        objective = Objective(suspect, anchor, k=cfg.k, beta=cfg.beta, gamma=cfg.gamma)
        t0 = time.perf_counter()
        best: tuple[InversionRun, HeldOutStats, list[CheckResult]] | None = None
        restarts_run = 0
        bar = tqdm(total=cfg.steps * cfg.restarts, desc=f"invert {model or suspect.source}", unit="step",
                   leave=False, disable=not cfg.show_progress)
        with bar:
            for restart in range(cfg.restarts):
                restarts_run += 1
                with autocast(device):
                    run = invert(objective, train, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                 weight_decay=cfg.weight_decay, generator=generator, patience=cfg.patience,
                                 progress=bar)
                    stats = held_out_stats(objective, run.v, test)
                checks = feature_checks(stats, th)
                score = sum(c.score / max(c.threshold, 1e-6) for c in checks)
                if best is None or score > sum(c.score / max(c.threshold, 1e-6) for c in best[2]):
                    best = (run, stats, checks)
                if all(c.passed for c in checks):
                    break  # the decision is certain enough: no more restarts needed
                bar.total = bar.n + cfg.steps * (cfg.restarts - restart - 1)
        timings["inversion"] = time.perf_counter() - t0
        assert best is not None
        run, stats, checks = best

        landscape = None
        feature_pass = anchor is not None and all(c.passed for c in checks)
        if feature_pass or (cfg.always_landscape and anchor is not None):
            t0 = time.perf_counter()
            lbatch = test.select(torch.arange(min(cfg.landscape_prompts, cfg.n_test), device=device))
            radius = cfg.landscape_radius * float(run.v.norm())
            with autocast(device):
                landscape = loss_landscape(objective, run.v, lbatch, grid=cfg.landscape_grid, radius=radius,
                                           generator=generator)
            checks = checks + [landscape_check(landscape.positive_ratio, th)]
            timings["landscape"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with autocast(device):
            triggers = recover_triggers(suspect, run.v, test, stats, th, candidates=cfg.trigger_candidates,
                                        anchor=anchor)
            targets = recover_target(suspect, stats, list(bank[: cfg.n_train]), top=cfg.target_captions)
            attention = self._attention_share(suspect, run.v, test)
        timings["explain"] = time.perf_counter() - t0

        verdict = decide(checks, has_anchor=anchor is not None)
        if anchor is None:
            notes.append("no anchor (clean base) model was available: the different-target check and the "
                         "verdict need one")
        timings["total"] = time.perf_counter() - started
        return ScanRecord(
            record_version=RECORD_VERSION, model=model or suspect.source, revision=revision,
            family=suspect.family, format=suspect.format, anchor=anchor_name or (anchor.source if anchor else None),
            verdict=verdict, checks=checks, target_captions=targets, triggers=triggers, landscape=landscape,
            assimilation_with_trigger=[round(float(a), 5) for a in stats.assimilation],
            assimilation_without_trigger=[round(float(a), 5) for a in stats.clean_assimilation],
            attention_share_per_layer=attention, restarts=restarts_run, steps=len(run.losses), seed=cfg.seed,
            timings={k: round(v, 3) for k, v in timings.items()}, device=describe(device), versions=_versions(),
            notes=notes,
            target_agreement=[round(float(a), 5) for a in stats.agreement],
            anchor_agreement=[] if stats.anchor_agreement is None
            else [round(float(a), 5) for a in stats.anchor_agreement],
        )

    @torch.no_grad()
    def _attention_share(self, encoder: TextEncoder, v: torch.Tensor, test: PromptBatch) -> list[float]:
        from bot.detect.features import insert

        batch = test.select(torch.arange(min(32, test.x_suspect.shape[0]), device=encoder.device))
        length = min(encoder.max_length, batch.length + self.config.k)
        x = insert(batch.x_suspect, v, has_bos=encoder.has_bos, max_length=length)
        position = 1 if encoder.has_bos else 0
        return [round(float(s.mean()), 5) for s in encoder.attention_to(x, position)]
