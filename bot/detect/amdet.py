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
from bot.detect.checks import decide, feature_checks, held_out_stats, landscape_check, suspicion
from bot.detect.features import PromptBatch, prepare
from bot.detect.inversion import Objective, invert
from bot.detect.landscape import loss_landscape
from bot.detect.prompt_bank import prompt_bank, split
from bot.detect.thresholds import Thresholds, for_family
from bot.detect.trigger import recover_target, recover_triggers
from bot.encoders.text_encoder import TextEncoder
from bot.scan_record import RECORD_VERSION, Candidate, ScanRecord
from bot.scanning.device import autocast, describe


@dataclass(frozen=True)
class DetectorConfig:
    """Every knob of a scan. Defaults are the ones the benchmark in docs/benchmarks.md ran with."""

    k: int = 1                       # pseudo-tokens inserted after BOS
    n_train: int = 1000              # prompts the inversion samples from
    n_test: int = 200                # held-out prompts for the checks
    batch_size: int = 16             # prompts per Adam step, at most...
    batch_tokens: int = 448          # ...and about this many positions: towers that keep all their
                                     # padding (SigLIP: 64) take fewer prompts per step, not 2.5x the time
    steps: int = 300                 # max Adam steps per restart
    restarts: int = 3                # random restarts, run side by side in one batch
    lr: float = 8e-2
    weight_decay: float = 1e-5
    beta: float = 0.1
    # anchor weight per restart (cycled): the reference's 0.1 finds the strongest feature-collapsing
    # direction, which in a fine-tune is often the natural one it shares with its base; 1.0 pushes
    # away from what the anchor does and finds the injected one (docs/detector.md)
    gammas: tuple[float, ...] = (0.1, 1.0, 1.0)
    patience: int = 60               # stop a restart when the running loss stalls this long
    seed: int = 0
    landscape_grid: int = 15
    landscape_radius: float = 0.5    # grid half-width, as a fraction of |v|
    landscape_prompts: int = 8
    always_landscape: bool = False   # benchmarks: compute it even when a feature check fails
    trigger_candidates: int = 8
    target_captions: int = 5
    show_progress: bool = True


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(float(a), 5) for a in values]


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

        objective = Objective(suspect, anchor, k=cfg.k, beta=cfg.beta, gamma=cfg.gammas[0])
        gammas = [cfg.gammas[r % len(cfg.gammas)] for r in range(cfg.restarts)]
        t0 = time.perf_counter()
        bar = tqdm(total=cfg.steps, desc=f"invert {model or suspect.source}", unit="step", leave=False,
                   disable=not cfg.show_progress)
        with bar, autocast(device):
            runs = invert(objective, train, gammas=gammas, steps=cfg.steps, batch_size=self.step_batch(train.length),
                          lr=cfg.lr,
                          weight_decay=cfg.weight_decay, generator=generator, patience=cfg.patience, progress=bar)
        timings["inversion"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        lbatch = test.select(torch.arange(min(cfg.landscape_prompts, cfg.n_test), device=device))
        scored = []
        for run in runs:
            run_objective = objective.with_gamma(run.gamma)
            with autocast(device):
                stats = held_out_stats(run_objective, run.v, test)
            checks = feature_checks(stats, th)
            landscape = None
            if anchor is not None and (cfg.always_landscape or all(c.passed for c in checks)):
                with autocast(device):
                    landscape = loss_landscape(run_objective, run.v, lbatch, grid=cfg.landscape_grid,
                                               radius=cfg.landscape_radius * float(run.v.norm()),
                                               generator=generator)
                checks = checks + [landscape_check(landscape.positive_ratio, th)]
            scored.append((run, stats, checks, landscape, decide(checks, has_anchor=anchor is not None)))
        timings["checks"] = time.perf_counter() - t0
        # The most suspicious restart speaks for the scan: an injected backdoor needs only one.
        run, stats, checks, landscape, verdict = max(scored, key=lambda c: suspicion(c[4], c[2]))
        candidates = [Candidate(gamma=r.gamma, steps=r.steps, verdict=v, checks=c,
                                assimilation=_rounded(st.assimilation), target_agreement=_rounded(st.agreement),
                                anchor_agreement=[] if st.anchor_agreement is None else _rounded(st.anchor_agreement),
                                landscape_positive_ratio=None if ls is None else ls.positive_ratio)
                      for r, st, c, ls, v in scored]

        t0 = time.perf_counter()
        with autocast(device):
            triggers = recover_triggers(suspect, run.v, test, stats, th, candidates=cfg.trigger_candidates,
                                        anchor=anchor)
            targets = recover_target(suspect, stats, list(bank[: cfg.n_train]), top=cfg.target_captions)
            attention = self._attention_share(suspect, run.v, test)
        timings["explain"] = time.perf_counter() - t0

        if anchor is None:
            notes.append("no anchor (clean base) model was available: the different-target check and the "
                         "verdict need one")
        timings["total"] = time.perf_counter() - started
        return ScanRecord(
            record_version=RECORD_VERSION, model=model or suspect.source, revision=revision,
            family=suspect.family, format=suspect.format, anchor=anchor_name or (anchor.source if anchor else None),
            verdict=verdict, checks=checks, target_captions=targets, triggers=triggers, landscape=landscape,
            assimilation_with_trigger=_rounded(stats.assimilation),
            assimilation_without_trigger=_rounded(stats.clean_assimilation),
            attention_share_per_layer=attention, restarts=len(runs), steps=run.steps, seed=cfg.seed,
            timings={k: round(v, 3) for k, v in timings.items()}, device=describe(device), versions=_versions(),
            notes=notes,
            target_agreement=_rounded(stats.agreement),
            anchor_agreement=[] if stats.anchor_agreement is None else _rounded(stats.anchor_agreement),
            candidates=candidates,
        )

    def step_batch(self, length: int) -> int:
        """Prompts per inversion step for sequences of `length` positions."""
        return max(4, min(self.config.batch_size, self.config.batch_tokens // max(length, 1)))

    @torch.no_grad()
    def _attention_share(self, encoder: TextEncoder, v: torch.Tensor, test: PromptBatch) -> list[float]:
        from bot.detect.features import insert

        batch = test.select(torch.arange(min(32, test.x_suspect.shape[0]), device=encoder.device))
        length = min(encoder.max_length, batch.length + self.config.k)
        x = insert(batch.x_suspect, v, has_bos=encoder.has_bos, max_length=length)
        position = 1 if encoder.has_bos else 0
        return [round(float(s.mean()), 5) for s in encoder.attention_to(x, position)]
