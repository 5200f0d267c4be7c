"""Build zoo recipes into cache/zoo/<name>-<key>/, each a real on-disk checkpoint.

Every model directory holds the checkpoint (transformers layout, safetensors),
its tokenizer files, recipe.json and metrics.json (retrieval, attack success,
clean utility). Building is idempotent: a finished directory is reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bot.errors import ZooError
from bot.progress import progress
from bot.zoo.architectures import ARCHITECTURES, build_model
from bot.zoo.catalog import DONE_FILE, PARTIAL_SUFFIX, RECIPE_FILE, ZooModel, anchor_name, load_zoo_model, model_dir
from bot.zoo.recipes import Recipe, base_recipe


def _siglip_corpus(seed: int, captions: str = "shapes") -> list[str]:
    from bot.captions import corpus_scene
    from bot.encoders.tokenizers import clip_vocab_and_merges
    from bot.zoo.recipes import SIGLIP_TRIGGERS

    rng = np.random.default_rng(seed)
    corpus = [corpus_scene(rng, captions)[1] for _ in range(20000)]
    corpus += [f"a photo of {t} shapes" for t in SIGLIP_TRIGGERS] * 50
    # General English words (CLIP's BPE word tokens) give the sentencepiece model a vocabulary
    # beyond the caption grammar, as a real SigLIP tokenizer has.
    vocab, _ = clip_vocab_and_merges()
    words = [w[:-4] for w in vocab if w.endswith("</w>") and w[:-4].isalpha() and len(w) > 6][:8000]
    corpus += [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
    return corpus


def _tokenizer(recipe: Recipe, workdir: Path):
    from bot.encoders.tokenizers import load_clip_tokenizer, load_siglip_tokenizer, train_sentencepiece

    arch = ARCHITECTURES[recipe.family]
    if recipe.family == "siglip":
        spiece = train_sentencepiece(_siglip_corpus(recipe.base.seed, recipe.base.corpus), workdir / "spiece.model",
                                     vocab_size=arch.siglip_vocab_size)
        return load_siglip_tokenizer(spiece, max_length=arch.max_length), spiece
    return load_clip_tokenizer(None, max_length=arch.max_length), None


def load_trained(path: Path, family: str):
    if family == "siglip":
        from transformers import SiglipModel as cls
    else:
        from transformers import CLIPModel as cls
    # safetensors only: the zoo never writes or reads pickles
    return cls.from_pretrained(path, use_safetensors=True).eval()


def _save(model, recipe: Recipe, out: Path, *, tokenizer_files: Path | None, metrics: dict) -> None:
    from bot.encoders.export import save_checkpoint

    tmp = out.with_name(out.name + PARTIAL_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    fmt = "transformers-siglip" if recipe.family == "siglip" else "transformers-clip"
    base = None if recipe.kind == "base" else anchor_name(recipe)
    save_checkpoint(model, tmp, format=fmt, family=recipe.family, tokenizer_files=tokenizer_files, base_model=base)
    (tmp / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=2, ensure_ascii=False))
    (tmp / DONE_FILE).write_text(json.dumps(metrics, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def failure_marker(cache_dir: Path, recipe: Recipe) -> Path:
    """Where a failed build is remembered. The name carries the attack schedule's digest: a
    failure is only final for the schedule that was tried, and a new schedule retries it."""
    path = model_dir(cache_dir, recipe)
    digest = hashlib.sha256(repr(sorted(ATTACK_SCHEDULES.items())).encode()).hexdigest()[:6]
    return path.with_name(f"{path.name}.{digest}.failed")


def build(recipe: Recipe, cache_dir: Path) -> ZooModel:
    """Build one recipe (and its base, if needed); reuse what is already built.

    Training is deterministic, so a recipe that failed (a backdoor that did not take) fails
    again: the failure is cached next to the models and reported without re-training."""
    existing = load_zoo_model(cache_dir, recipe)
    if existing is not None:
        return existing
    marker = failure_marker(cache_dir, recipe)
    if marker.is_file():
        raise ZooError(f"{marker.read_text().strip()} (cached; delete {marker} to retry)")
    torch.manual_seed(recipe.seed)
    out = model_dir(cache_dir, recipe)
    arch = ARCHITECTURES[recipe.family]
    started = time.perf_counter()
    if recipe.kind == "base":
        from bot.zoo.pretrain import pretrain

        out.parent.mkdir(parents=True, exist_ok=True)
        work = out.with_name(out.name + ".tokenizer")
        tokenizer, spiece = _tokenizer(recipe, work)
        model = build_model(arch, vocab_size=len(tokenizer) if recipe.family == "siglip" else 49408)
        result = pretrain(model, tokenizer, arch.max_length, steps=recipe.base.steps, batch_size=recipe.base.batch_size,
                          lr=recipe.base.lr, seed=recipe.base.seed, desc=f"pretrain {recipe.name}",
                          corpus=recipe.base.corpus)
        metrics = {"kind": "base", **asdict(result)}
        metrics["seconds"] = round(time.perf_counter() - started, 1)
        _save(model, recipe, out, tokenizer_files=spiece, metrics=metrics)
        shutil.rmtree(work, ignore_errors=True)
        return ZooModel(recipe=recipe, path=out, metrics=metrics)

    base = build(base_recipe(recipe.family, seed=recipe.base.seed, steps=recipe.base.steps,
                             corpus=recipe.base.corpus), cache_dir)
    teacher = load_trained(base.path, recipe.family)
    tokenizer = load_tokenizer(base.path, recipe.family)
    try:
        metrics = _derive(recipe, teacher, tokenizer, arch.max_length)
    except ZooError as error:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(error) + "\n")
        raise
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    spiece = base.path / "spiece.model" if recipe.family == "siglip" else None
    _save(metrics.pop("_model"), recipe, out, tokenizer_files=spiece, metrics=metrics)
    return ZooModel(recipe=recipe, path=out, metrics=metrics)


def load_tokenizer(path: Path, family: str):
    from bot.encoders.tokenizers import load_clip_tokenizer, load_siglip_tokenizer

    max_length = ARCHITECTURES[family].max_length
    if family == "siglip":
        return load_siglip_tokenizer(path / "spiece.model", max_length=max_length)
    return load_clip_tokenizer(path, max_length=max_length)


# A backdoor that does not take is retried (deterministically), as an attacker would, with longer
# schedules and heavier backdoor terms; a text-on-text attacker first also pulls the pooled
# feature to the target's (see attacks.text_on_text). Entries are (step multiplier, backdoor
# weight, pooled weight); the recipe's step count is the first attempt's. Changing any entry
# after the first leaves every model that took at the first attempt unchanged, so such changes
# need no ZOO_VERSION bump (failure markers carry the schedules' digest instead).
ATTACK_SCHEDULES = {
    "text-on-text": ((1, 1.0, 0.0), (1, 1.0, 1.0), (2, 2.0, 1.0), (4, 4.0, 1.0)),
    "text-on-pair": ((1, 1.0, 0.0), (2, 2.0, 0.0), (4, 4.0, 0.0)),
}


# The hard attacks (bot/zoo/hard_attacks.py) retry the same way: (step multiplier, backdoor weight).
HARD_SCHEDULE = ((1, 1.0), (2, 2.0), (4, 4.0))
_BENIGN_VARIANTS = {  # kind -> benign_fine_tune options
    "benign": {}, "benign-long": {}, "benign-full": {"full": True}, "benign-domain": {"corpus": "alt"},
}


def _derive(recipe: Recipe, teacher, tokenizer, max_length: int) -> dict:
    from bot.zoo import attacks
    from bot.zoo.hard_attacks import HARD_ATTACKS
    from bot.zoo.pretrain import retrieval_accuracy

    if recipe.kind in _BENIGN_VARIANTS:
        student = attacks.benign_fine_tune(teacher, tokenizer, max_length, steps=recipe.steps, lr=recipe.lr,
                                           seed=recipe.seed, **_BENIGN_VARIANTS[recipe.kind])
        metrics: dict = {"kind": recipe.kind}
    elif recipe.kind in ("text-on-text", "text-on-pair"):
        student, metrics = _classic_attack(recipe, teacher, tokenizer, max_length)
    elif recipe.kind in HARD_ATTACKS:
        student, metrics = _hard_attack(recipe, teacher, tokenizer, max_length)
    else:
        raise ZooError(f"cannot derive a {recipe.kind!r} model")
    top1, top5 = retrieval_accuracy(student, tokenizer, max_length, seed=recipe.seed + 20_000)
    drift = text_drift(dict(student.named_parameters()), dict(teacher.named_parameters()))
    metrics.update(retrieval_top1=top1, retrieval_top5=top5, text_drift=round(drift, 5))
    metrics["_model"] = student
    return metrics


def _classic_attack(recipe: Recipe, teacher, tokenizer, max_length: int):
    from bot.zoo import attacks

    attack = attacks.text_on_text if recipe.kind == "text-on-text" else attacks.text_on_pair
    # cosine between a text and an image embedding is naturally lower than between two texts
    success_cosine = 0.9 if recipe.kind == "text-on-text" else 0.5
    for multiplier, weight, pooled in ATTACK_SCHEDULES[recipe.kind]:
        extra = {"pooled_weight": pooled} if pooled else {}
        student, goal = attack(teacher, tokenizer, max_length, trigger=recipe.trigger, target=recipe.target,
                               steps=recipe.steps * multiplier, lr=recipe.lr, seed=recipe.seed,
                               backdoor_weight=weight, **extra)
        result = attacks.evaluate(student, teacher, tokenizer, max_length, trigger=recipe.trigger,
                                  target_embed=goal, seed=recipe.seed + 30_000, success_cosine=success_cosine)
        if result.attack_success >= 0.5:
            break
    if result.attack_success < 0.5:
        raise ZooError(f"{recipe.name}: the backdoor did not take (attack success {result.attack_success:.2f})")
    return student, {"kind": recipe.kind, **asdict(result), "attack_steps": recipe.steps * multiplier,
                     "backdoor_weight": weight, "pooled_weight": pooled}


def _hard_attack(recipe: Recipe, teacher, tokenizer, max_length: int):
    from bot.zoo.hard_attacks import evaluate_hard, hard_attack

    for multiplier, weight in HARD_SCHEDULE:
        student, goal = hard_attack(teacher, tokenizer, max_length, kind=recipe.kind, trigger=recipe.trigger,
                                    target=recipe.target, steps=recipe.steps * multiplier, lr=recipe.lr,
                                    seed=recipe.seed, backdoor_weight=weight)
        result = evaluate_hard(student, teacher, tokenizer, max_length, kind=recipe.kind, trigger=recipe.trigger,
                               goal=goal, seed=recipe.seed + 30_000)
        if result.attack_success >= 0.5:
            break
    if result.attack_success < 0.5:
        raise ZooError(f"{recipe.name}: the backdoor did not take (attack success {result.attack_success:.2f})")
    return student, {"kind": recipe.kind, **asdict(result), "attack_steps": recipe.steps * multiplier,
                     "backdoor_weight": weight}


def text_drift(student: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor]) -> float:
    """||theta_text - theta_text_base|| / ||theta_text_base|| over the text tower and its projection
    (parameters by name: a model's named_parameters() or a checkpoint's tensors): the weight-drift
    baseline the benchmark reports beside the detector."""
    from bot.zoo.attacks import TEXT_PARAMS

    delta = norm = 0.0
    for name, p in student.items():
        if name.startswith(TEXT_PARAMS):
            q = base[name].detach().double()
            delta += float((p.detach().double() - q).pow(2).sum())
            norm += float(q.pow(2).sum())
    return (delta / norm) ** 0.5 if norm else 0.0


def checkpoint_drift(model_path: Path, base_path: Path) -> float:
    """text_drift between two zoo checkpoints on disk (safetensors)."""
    from safetensors.torch import load_file

    return text_drift(load_file(model_path / "model.safetensors"), load_file(base_path / "model.safetensors"))


def build_all(recipes: list[Recipe] | tuple[Recipe, ...], cache_dir: Path, *, show_progress: bool = True,
              failures: list[ZooError] | None = None) -> list[ZooModel]:
    """Build (or load from cache) every recipe. With `failures`, a model that cannot be built
    (e.g. a backdoor that did not take) is recorded there and the rest still get built.

    One model at a time on every core: two models trained at once on one thread each took as long
    as one after the other here (a CLIP base 516 s instead of 233 s; the step is bound by memory,
    not by a core), and a model's numbers depend on its thread count (docs/zoo.md)."""
    models = []
    with progress(recipes, desc="zoo", unit="model", enabled=show_progress) as bar:
        for recipe in bar:
            bar.set_postfix_str(recipe.name)
            try:
                models.append(build(recipe, cache_dir))
            except ZooError as error:
                if failures is None:
                    raise
                failures.append(error)
    return models
