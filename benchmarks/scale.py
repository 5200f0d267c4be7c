"""How a scan scales to real-size text towers: time per inversion step, peak memory, and the whole scan.

    .venv/bin/python benchmarks/scale.py                       # every tower, fp32 and bf16, on the best device
    .venv/bin/python benchmarks/scale.py --towers vit-l-14 --dtypes bf16 --whole   # on a GPU: run the scan whole

Towers are randomly initialised (`TextTower.random`), shaped like the public ones (random weights time
the same as trained ones; the verdict of such a scan means nothing and is not reported). Every
figure uses the detector's own defaults (DetectorConfig): prompts per step, restarts, held-out and
probe prompts, landscape grid.

Without --whole (the CPU default: a real-size step takes seconds there) the scan is extrapolated
from measured parts: `--steps` inversion steps, the held-out statistics of one restart, and one
chunk of landscape points, combined for three step counts: a clean scan that the adaptive restarts
end at step 40, a backdoor found at step 20 (one landscape), and the 300-step cap. With --whole the
scan runs end to end with its step count pinned (adaptive stopping off) and is timed as a user
would see it. Each (tower, dtype) runs in a fresh process so peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace

TOWERS = {
    # name: (family, hidden, layers, heads, mlp, positions)
    "vit-b-32": ("clip", 512, 12, 8, 2048, 77),
    "vit-l-14": ("clip", 768, 12, 12, 3072, 77),
    "longclip-l": ("longclip", 768, 12, 12, 3072, 248),
    "siglip-so400m": ("siglip", 1152, 27, 16, 4304, 64),
}
# (steps until the adaptive restarts stop, landscapes computed): see docs/performance.md
SCENARIOS = {"clean (stops at 40)": (40, 0), "backdoor (found at 20)": (20, 1), "cap (300 steps)": (300, 1)}


@dataclass
class Figures:
    tower: str
    dtype: str
    device: str
    step_s: float              # one inversion step: every restart side by side, forward and backward, both towers
    prepare_s: float
    heldout_s: float           # one restart's held-out statistics (200 prompts, both towers)
    landscape_s: float         # one landscape (grid x grid points)
    probe_s: float             # one checkpoint's probe statistics for one restart
    peak_mb: float
    scans: dict[str, float]    # scenario -> seconds (extrapolated, or measured with --whole)
    measured_whole: bool


def _encoder(family: str, hidden: int, layers: int, heads: int, mlp: int, positions: int, *, seed: int, device):
    import torch

    from bot.encoders.text_encoder import TextEncoder
    from bot.encoders.tokenizers import load_clip_tokenizer
    from bot.encoders.tower import TextTower, TowerSpec

    torch.manual_seed(seed)
    # one tokenizer for every shape: the step's cost does not depend on which vocabulary made the ids
    tokenizer = load_clip_tokenizer(None, max_length=positions)
    spec = TowerSpec(vocab_size=49408, hidden_size=hidden, intermediate_size=mlp, num_layers=layers,
                     num_heads=heads, max_positions=positions, causal=family != "siglip",
                     activation="gelu_pytorch_tanh" if family == "siglip" else "quick_gelu",
                     head_size=hidden if family == "siglip" else None)
    projection = None if family == "siglip" else torch.nn.Linear(hidden, hidden, bias=False)
    return TextEncoder(family=family, tower=TextTower.random(spec, seed=seed), projection=projection,
                       tokenizer=tokenizer, source=f"random-{family}-{hidden}", format="scale-benchmark").to(device)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> tuple[float, object]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def measure(tower: str, dtype: str, *, steps: int, whole: bool, device_choice: str) -> Figures:
    import contextlib

    import torch

    from bot.detect.amdet import Amdet, DetectorConfig
    from bot.detect.checks import held_out_stats
    from bot.detect.features import prepare
    from bot.detect.inversion import Objective, invert
    from bot.detect.landscape import loss_landscape
    from bot.detect.prompt_bank import prompt_bank, split
    from bot.scanning.device import describe, select_device

    device = select_device(device_choice)
    shape = TOWERS[tower]
    suspect = _encoder(*shape, seed=0, device=device)
    anchor = _encoder(*shape, seed=1, device=device)
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
    cfg = DetectorConfig(show_progress=False).resolved(shape[0])  # the family's restart plan
    detector = Amdet(cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    generator = torch.Generator().manual_seed(0)
    bank = prompt_bank()
    train_prompts, test_prompts = split(bank, n_train=cfg.n_train, n_test=cfg.n_test)
    # Parts are timed on SAMPLE prompts and scaled to the scan's counts (a real-size forward pass over every
    # prompt would take minutes on a CPU); the steps sample their prompts from these.
    sample = 64
    with cast:
        prepare_s, train = _timed(lambda: prepare(suspect, anchor, train_prompts[:sample], k=cfg.k), device)
        test = prepare(suspect, anchor, test_prompts[:sample], k=cfg.k)
        prepare_s *= (cfg.n_train + cfg.n_test + cfg.probe_prompts) / sample
    objective = Objective(suspect, anchor, k=cfg.k, beta=cfg.beta, gamma=cfg.gammas[0])
    gammas = [cfg.gammas[r % len(cfg.gammas)] for r in range(cfg.restarts)]
    batch = detector.step_batch(train.length)

    def run_steps(n: int):
        with cast:
            return invert(objective, train, gammas=gammas, steps=n, batch_size=batch, lr=cfg.lr,
                          weight_decay=cfg.weight_decay, generator=generator, patience=10**9,
                          check_every=cfg.check_every)

    run_steps(1)  # warm-up: allocator, kernels, lazy init
    inversion_s, runs = _timed(lambda: run_steps(steps), device)
    step_s = inversion_s / steps
    v = runs[0].v
    with cast:
        sample_s, _ = _timed(lambda: held_out_stats(objective, v, test), device)
    heldout_s = sample_s * cfg.n_test / sample
    probe_s = sample_s * cfg.probe_prompts / sample
    lbatch = test.select(torch.arange(cfg.landscape_prompts, device=device))
    # one chunk of the grid, scaled to the whole grid (the landscape is fp32 whatever the autocast)
    small = 3
    small_s, _ = _timed(lambda: loss_landscape(objective, v, lbatch, grid=small, radius=0.5 * float(v.norm()),
                                               generator=generator), device)
    landscape_s = small_s * cfg.landscape_grid ** 2 / small ** 2
    scans: dict[str, float] = {}
    for name, (n_steps, landscapes) in SCENARIOS.items():
        checkpoints = max(0, (n_steps - cfg.min_steps) // cfg.check_every + 1)
        scans[name] = (prepare_s + n_steps * step_s + checkpoints * cfg.restarts * probe_s
                       + cfg.restarts * heldout_s + landscapes * landscape_s + heldout_s)  # + explain ~ held-out
    if whole:
        # the scan's own precision switch: bf16 autocast on CUDA when asked for, fp32 otherwise (on a CPU the
        # outer autocast carries bf16 into it)
        pinned = replace(cfg, min_steps=10**9, patience=10**9, mixed_precision=dtype == "bf16")
        for name, (n_steps, _) in SCENARIOS.items():
            if n_steps > 60 and device.type != "cuda":
                continue
            with cast:
                seconds, _ = _timed(lambda n=n_steps: Amdet(replace(pinned, steps=n)).scan(suspect, anchor), device)
            scans[name] = seconds
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Figures(tower=tower, dtype=dtype, device=describe(device), step_s=step_s, prepare_s=prepare_s,
                   heldout_s=heldout_s, landscape_s=landscape_s, probe_s=probe_s, peak_mb=peak, scans=scans,
                   measured_whole=whole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--towers", nargs="+", choices=sorted(TOWERS), default=list(TOWERS))
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=2, help="inversion steps timed (after one warm-up step)")
    parser.add_argument("--whole", action="store_true", help="also run the scan end to end (GPU: every scenario)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as in docs)")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: tower:dtype
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.one:
        tower, dtype = args.one.split(":")
        figures = measure(tower, dtype, steps=args.steps, whole=args.whole, device_choice=args.device)
        print(json.dumps(figures.__dict__))
        return
    from bot.cli.output import table

    results = []
    for tower in args.towers:
        for dtype in args.dtypes:
            cmd = [sys.executable, __file__, "--one", f"{tower}:{dtype}", "--steps", str(args.steps),
                   "--device", args.device, "--threads", str(args.threads)] + (["--whole"] if args.whole else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                print(f"{tower} {dtype}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{tower} {dtype}: done", file=sys.stderr, flush=True)
    rows = [[r["tower"], r["dtype"], r["device"], f"{r['step_s']:.3f}", f"{r['landscape_s']:.1f}",
             f"{r['peak_mb']:.0f}", *(f"{s:.1f}" for s in r["scans"].values()),
             "measured" if r["measured_whole"] else "extrapolated"]
            for r in results]
    print(table(["tower", "dtype", "device", "s/step", "landscape s", "peak MB", *SCENARIOS, "scan"], rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
