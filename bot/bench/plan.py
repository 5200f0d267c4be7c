"""What the detector benchmark builds: zoo v2's calibration and report sets (light: no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.zoo.recipes import Recipe, v2_bases, v2_recipes

STAGES = ("calibrate", "report")


@dataclass(frozen=True)
class BenchPlan:
    """Zoo v2 (bot/zoo/recipes.py): per seed one model of every attack kind and `benign_per_kind` of
    every benign kind, seeds cycling over the family's bases; trigger and target pools split
    between the calibration and the report seeds. The report set also holds every clean base."""

    families: tuple[str, ...]
    calibration_seeds: tuple[int, ...] = (1, 2, 3)
    report_seeds: tuple[int, ...] = (1001, 1002, 1003, 1004)
    calibration_benign_per_kind: int = 1
    report_benign_per_kind: int = 2


def recipes_for(plan: BenchPlan, family: str, split: str) -> list[Recipe]:
    if split == "calibration":
        return v2_recipes(family, plan.calibration_seeds, split, benign_per_kind=plan.calibration_benign_per_kind)
    return v2_bases(family) + v2_recipes(family, plan.report_seeds, split, benign_per_kind=plan.report_benign_per_kind)
