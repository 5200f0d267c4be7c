"""AMDET, end to end: invert, check, filter natural backdoors, explain, decide.

    detector = Amdet(DetectorConfig())
    record = detector.scan(suspect, anchor)
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch

from bot import __version__
from bot.detect.checks import (
    HeldOutStats,
    decide,
    feature_checks,
    held_out_stats,
    landscape_check,
    suspicion,
)
from bot.detect.features import PromptBatch, prepare
from bot.detect.inversion import Objective, Stop, invert
from bot.detect.landscape import loss_landscape
from bot.detect.prompt_bank import prompt_bank, split
from bot.detect.thresholds import Calibration, Thresholds, calibration_for
from bot.detect.trigger import recover_target, recover_triggers
from bot.encoders.text_encoder import TextEncoder
from bot.progress import progress
from bot.scan_record import (
    RECORD_VERSION,
    Candidate,
    CheckResult,
    Landscape,
    ScanRecord,
    Verdict,
)
from bot.scanning.device import autocast, describe


@dataclass(frozen=True)
class DetectorConfig:
    """Every knob of a scan. The restart plan (k, steps, modes, v_scale, v_max_norm) left at None is the
    scanned family's (FAMILY_PLANS; `resolved`); set, it overrides the family's."""

    k: int | None = None             # pseudo-tokens per restart
    n_train: int = 1000              # prompts the inversion samples from
    n_test: int = 200                # held-out prompts for the checks
    batch_size: int = 8              # prompts per Adam step, at most...
    batch_tokens: int = 256          # ...and about this many positions: towers that keep all their
                                     # padding (SigLIP: 64) take fewer prompts per step, not 2.5x the time
    # max Adam steps per restart: also a statistic. An injected backdoor's direction is a short way from
    # any start (its pooled restarts pass by step 40 on zoo v2's calibration seeds); heavy benign
    # fine-tunes let a pooled restart dig a collapse out only after 80-220 steps (docs/detector.md)
    steps: int | None = None
    restarts: int = 3                # random restarts, run side by side in one batch
    lr: float = 8e-2
    weight_decay: float = 1e-5
    beta: float = 0.1
    # anchor weight per restart (cycled): the reference's 0.1 finds the strongest feature-collapsing
    # direction, which in a fine-tune is often the natural one it shares with its base; 1.0 pushes
    # away from what the anchor does and finds the injected one (docs/detector.md)
    gammas: tuple[float, ...] = (0.1, 1.0, 1.0)
    # where each restart inserts its pseudo-token (cycled like gammas; features.POSITIONS): "start"
    # is the reference's; a trigger trained to fire only as the last word or mid-sentence is only
    # found from "end" or "middle"
    positions: tuple[str, ...] = ("start",)
    # what each restart optimises (cycled; inversion.MODES): "tokens" makes every token's feature
    # alike (the reference's); "pooled" makes the pooled embeddings of all prompts alike, for
    # backdoors that move the pooled embedding alone
    modes: tuple[str, ...] | None = None
    # "unit": v starts as a standard normal vector and Adam steps by lr (the reference's); "token":
    # v starts at the size of the suspect's token embeddings and steps in proportion
    v_scale: str | None = None
    v_max_norm: float | None = None  # bound on each pseudo-token's norm, x the largest token's (inf: none)
    patience: int = 60               # stop a restart when the running loss stalls this long
    # Adaptive restarts: every `check_every` steps each restart's checks are measured on
    # `probe_prompts` prompts kept apart from both the inversion's and the held-out ones. From
    # `min_steps` on, a restart stops once every check passes with `pass_margin` of the way from its
    # threshold to 1 left over (more steps would not change its verdict), or once one check has sat
    # below `give_up_ratio` of its threshold for `give_up_checks` checkpoints in a row (it cannot
    # pass: benign restarts sit at 0 from the first checkpoints, backdoored ones climb). A restart
    # that stops passing is scored at once; a backdoor verdict there stops the others (nothing can
    # make the verdict more severe). docs/performance.md has the trajectories these rest on.
    check_every: int = 10
    probe_prompts: int = 64
    min_steps: int = 20
    pass_margin: float = 0.5
    give_up_ratio: float = 0.25
    give_up_checks: int = 3
    seed: int = 0
    # The landscape is evidence in the report and decides nothing (checks.decide), so a scan computes it on
    # a 9 x 9 grid, once, for a backdoor verdict: 81 points instead of the benchmark's 225 (most of a
    # backdoor scan's `checks` time; docs/performance.md). The benchmark keeps 15 (bench.detect.BENCH_LANDSCAPE_GRID).
    landscape_grid: int = 9
    landscape_radius: float = 0.5    # grid half-width, as a fraction of |v|
    landscape_prompts: int = 8
    always_landscape: bool = False   # benchmarks: compute it even when a feature check fails
    trigger_candidates: int = 8
    target_captions: int = 5
    mixed_precision: bool = True     # bf16 autocast on CUDA (never on CPU); the landscape is fp32 regardless
    show_progress: bool = True

    def resolved(self, family: str) -> "DetectorConfig":
        """This configuration with every restart-plan knob left at None taken from `family`'s plan."""
        plan = FAMILY_PLANS.get(family, FIRST_ZOO_PLAN)
        return replace(self, **{name: value for name, value in plan.items() if getattr(self, name) is None})


# The restart plans the families ship with. CLIP's was chosen on zoo v2's calibration seeds only
# (docs/detector.md, "Zoo v2: CLIP's restart plan"): four pseudo-tokens at the size of real tokens, one
# token restart at anchor weight 0.1 and two restarts on the pooled embedding at 1.0, 60 steps. LongCLIP
# and SigLIP keep the first zoo's plan until their zoo-v2 calibration seeds are built and scanned.
FIRST_ZOO_PLAN: dict[str, Any] = {"k": 1, "steps": 300, "modes": ("tokens",), "v_scale": "unit",
                                  "v_max_norm": math.inf}
FAMILY_PLANS: dict[str, dict[str, Any]] = {
    "clip": {"k": 4, "steps": 60, "modes": ("tokens", "pooled", "pooled"), "v_scale": "token", "v_max_norm": 1.0},
}


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(float(a), 5) for a in values]


def _versions() -> dict[str, str]:
    import huggingface_hub
    import transformers

    return {"clip-audit-bot": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "huggingface_hub": huggingface_hub.__version__, "python": platform.python_version()}


class _Scored(NamedTuple):
    stats: HeldOutStats
    checks: list[CheckResult]
    landscape: Landscape | None
    verdict: Verdict


class Referee:
    """Decides, at each checkpoint, which restarts have nothing left to find (DetectorConfig's
    adaptive-restart knobs)."""

    def __init__(self, cfg: DetectorConfig, objective: Objective, probe: PromptBatch, th: Thresholds,
                 gammas: list[float], positions: list[str] | None = None, modes: list[str] | None = None) -> None:
        self.cfg, self.objective, self.probe, self.th, self.gammas = cfg, objective, probe, th, gammas
        self.positions = positions or ["start"] * len(gammas)
        self.modes = modes or ["tokens"] * len(gammas)
        self.lows: dict[int, int] = {}  # restart -> checkpoints in a row with a check far below its threshold
        self.margin: dict[int, float] = {}  # restart -> its probe checks' total score over threshold, last seen

    def __call__(self, step: int, going: dict[int, torch.Tensor]) -> dict[int, Stop]:
        cfg = self.cfg
        if step < cfg.min_steps:
            return {}
        stops: dict[int, Stop] = {}
        for r, v in going.items():
            objective = self.objective.with_gamma(self.gammas[r], self.positions[r], self.modes[r])
            checks = feature_checks(held_out_stats(objective, v, self.probe), self.th, mode=self.modes[r])
            self.margin[r] = sum(c.score / max(c.threshold, 1e-6) for c in checks)
            why = self.judge(r, checks)
            if why is not None:
                stops[r] = why
        return stops

    def judge(self, r: int, checks: list[CheckResult]) -> Stop | None:
        """One restart's probe checks at one checkpoint -> why it stops now, or None to go on."""
        cfg = self.cfg
        if all(c.score >= c.threshold + cfg.pass_margin * (1 - c.threshold) for c in checks):
            return Stop.PASSING
        far_below = min(c.score / max(c.threshold, 1e-6) for c in checks) < cfg.give_up_ratio
        self.lows[r] = self.lows.get(r, 0) + 1 if far_below else 0
        return Stop.CANNOT_PASS if self.lows[r] >= cfg.give_up_checks else None


class Amdet:
    def __init__(self, config: DetectorConfig | None = None, *, thresholds: Thresholds | None = None) -> None:
        self.config = config or DetectorConfig()
        self.thresholds = thresholds

    def scan(self, suspect: TextEncoder, anchor: TextEncoder | None, *, model: str | None = None,
             revision: str | None = None, anchor_name: str | None = None,
             calibration: Calibration | None = None) -> ScanRecord:
        """`calibration`: the thresholds to decide by, fitted on the anchor's own variants (`clip-audit
        calibrate`); None: the thresholds given to the detector, else the family's shipped calibration."""
        cfg = self.config.resolved(suspect.family)
        if calibration is None:
            calibration = calibration_for(suspect.family) if self.thresholds is None else Calibration(
                thresholds=self.thresholds, source="thresholds given by the caller")
        th = calibration.thresholds
        timings: dict[str, float] = {}
        started = time.perf_counter()
        device = suspect.device
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        notes: list[str] = []
        if anchor is not None and anchor.family != suspect.family:
            notes.append(f"anchor family {anchor.family} differs from suspect family {suspect.family}")
        size_note = calibration.mismatch(suspect.hidden_size, suspect.tower.spec.num_layers)
        if size_note:
            notes.append(size_note)

        t0 = time.perf_counter()
        bank = prompt_bank()
        train_prompts, test_prompts = split(bank, n_train=cfg.n_train, n_test=cfg.n_test)
        probe_prompts = list(bank[cfg.n_train + cfg.n_test: cfg.n_train + cfg.n_test + cfg.probe_prompts])
        with autocast(device, enabled=cfg.mixed_precision):
            train = prepare(suspect, anchor, train_prompts, k=cfg.k, lazy=True)
            test = prepare(suspect, anchor, test_prompts, k=cfg.k)
            probe = prepare(suspect, anchor, probe_prompts, k=cfg.k)
        timings["prepare"] = time.perf_counter() - t0

        objective = Objective(suspect, anchor, k=cfg.k, beta=cfg.beta, gamma=cfg.gammas[0])
        gammas = [cfg.gammas[r % len(cfg.gammas)] for r in range(cfg.restarts)]
        positions = [cfg.positions[r % len(cfg.positions)] for r in range(cfg.restarts)]
        modes = [cfg.modes[r % len(cfg.modes)] for r in range(cfg.restarts)]
        lbatch = test.select(torch.arange(min(cfg.landscape_prompts, cfg.n_test), device=device))
        scored: dict[int, _Scored] = {}
        spent = {"checks": 0.0}

        def score(r: int, v: torch.Tensor, *, with_landscape: bool = True) -> _Scored:
            t = time.perf_counter()
            run_objective = objective.with_gamma(gammas[r], positions[r], modes[r])
            with autocast(device, enabled=cfg.mixed_precision):
                stats = held_out_stats(run_objective, v, test)
            checks = feature_checks(stats, th, mode=modes[r])
            landscape = None
            if with_landscape and anchor is not None and (cfg.always_landscape or all(c.passed for c in checks)):
                landscape = loss_landscape(run_objective, v, lbatch, grid=cfg.landscape_grid,
                                           radius=cfg.landscape_radius * float(v.norm()), generator=generator)
                checks = checks + [landscape_check(landscape.positive_ratio, th)]
            spent["checks"] += time.perf_counter() - t
            return _Scored(stats, checks, landscape, decide(checks, has_anchor=anchor is not None))

        referee = Referee(cfg, objective, probe, th, gammas, positions, modes)

        def checkpoint(step: int, going: dict[int, torch.Tensor]) -> dict[int, Stop]:
            with autocast(device, enabled=cfg.mixed_precision):
                stops = referee(step, going)
            # the most convincing passing restart is scored (landscape and all) first: a backdoor
            # verdict there ends every other restart, passing ones included, without a landscape
            for r in sorted((r for r, why in stops.items() if why is Stop.PASSING), key=referee.margin.get,
                            reverse=True):
                if any(sc.verdict is Verdict.BACKDOOR for sc in scored.values()):
                    stops[r] = Stop.DECIDED
                    continue
                scored[r] = score(r, going[r])
            if any(sc.verdict is Verdict.BACKDOOR for sc in scored.values()):
                stops.update({other: Stop.DECIDED for other in going if other not in stops})
            return stops

        t0 = time.perf_counter()
        bar = progress(total=cfg.steps, desc=f"invert {model or suspect.source}", unit="step", leave=False,
                       enabled=cfg.show_progress)
        with bar, autocast(device, enabled=cfg.mixed_precision):
            runs = invert(objective, train, gammas=gammas, steps=cfg.steps, batch_size=self.step_batch(train.length),
                          lr=cfg.lr, weight_decay=cfg.weight_decay, generator=generator, patience=cfg.patience,
                          check_every=cfg.check_every, checkpoint=checkpoint, progress=bar, positions=positions,
                          modes=modes, **self._v_bounds(suspect, cfg))
        timings["inversion"] = time.perf_counter() - t0 - spent["checks"]

        for r, run in enumerate(runs):
            if r not in scored:
                # a restart cut short by another's verdict keeps its statistics, not a landscape of its own
                scored[r] = score(r, run.v, with_landscape=run.stop is not Stop.DECIDED or cfg.always_landscape)
        timings["checks"] = spent["checks"]
        # The most suspicious restart speaks for the scan: an injected backdoor needs only one.
        best = max(range(len(runs)), key=lambda r: suspicion(scored[r].verdict, scored[r].checks))
        run, (stats, checks, landscape, verdict) = runs[best], scored[best]
        candidates = [Candidate(gamma=r.gamma, steps=r.steps, verdict=sc.verdict, checks=sc.checks,
                                assimilation=_rounded(sc.stats.assimilation),
                                target_agreement=_rounded(sc.stats.agreement),
                                anchor_agreement=[] if sc.stats.anchor_agreement is None
                                else _rounded(sc.stats.anchor_agreement),
                                landscape_positive_ratio=None if sc.landscape is None else sc.landscape.positive_ratio,
                                stop=r.stop.value, position=positions[i], mode=modes[i])
                      for i, r, sc in ((i, runs[i], scored[i]) for i in range(len(runs)))]

        t0 = time.perf_counter()
        with autocast(device, enabled=cfg.mixed_precision):
            triggers = recover_triggers(suspect, run.v, test, stats, th, candidates=cfg.trigger_candidates,
                                        anchor=anchor, position=positions[best])
            # the reports show a recovered target only for findings or a confirmed trigger
            wanted = verdict in (Verdict.BACKDOOR, Verdict.NATURAL_ONLY) or any(t.confirmed for t in triggers)
            targets = recover_target(suspect, stats, list(bank[: cfg.n_train]), top=cfg.target_captions) \
                if wanted else []
            attention = self._attention_share(suspect, run.v, test, positions[best])
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
            candidates=candidates, calibration=calibration.describe(),
        )

    @staticmethod
    def _v_bounds(suspect: TextEncoder, cfg: DetectorConfig) -> dict[str, float | None]:
        """invert()'s scale and max_norm from the (resolved) configuration and the suspect's token embeddings."""
        if cfg.v_scale not in ("unit", "token"):
            raise ValueError(f"unknown v_scale {cfg.v_scale!r}")
        norms = suspect.token_embeddings.detach().float().norm(dim=-1)
        scale = 1.0 if cfg.v_scale == "unit" else float(norms.median()) / suspect.hidden_size ** 0.5
        max_norm = None if cfg.v_max_norm in (None, math.inf) else cfg.v_max_norm * float(norms.max())
        return {"scale": scale, "max_norm": max_norm}

    def step_batch(self, length: int) -> int:
        """Prompts per inversion step for sequences of `length` positions."""
        return max(4, min(self.config.batch_size, self.config.batch_tokens // max(length, 1)))

    @torch.no_grad()
    def _attention_share(self, encoder: TextEncoder, v: torch.Tensor, test: PromptBatch,
                         position: str = "start") -> list[float]:
        from bot.detect.features import insert, insertion_points

        batch = test.select(torch.arange(min(32, test.x_suspect.shape[0]), device=encoder.device))
        length = min(encoder.max_length, batch.length + v.shape[0])  # v: [k, d]
        at = insertion_points(batch, position, has_bos=encoder.has_bos)
        x = insert(batch.x_suspect, v, has_bos=encoder.has_bos, max_length=length, at=at)
        where = (1 if encoder.has_bos else 0) if at is None else at
        return [round(float(s.mean()), 5) for s in encoder.attention_to(x, where)]
