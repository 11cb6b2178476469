"""Points of the region between models: interpolation lines, planes, Dirichlet samples, fused bases.

Every point is a *mix*: a linear combination Σ c_i θ_i of stored encoder weights. A mix
is named by a hash of its recipe, so the same point asked for twice (by two lines, or
again in a later run) is one model with one set of cached features and probe results;
a recipe of one model with coefficient 1 is that model itself (α=0 and α=1 of a line
are its endpoints, exactly). Plans are drawn from the config with a fixed seed, so the
DAG is the same on every run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

import numpy as np

from . import study

RELATIONS = ("same_dataset", "same_task", "cross_task", "pretrained")
PLANE_KINDS = ("same_task", "pretrained")


def point_id(recipe: dict[str, float]) -> str:
    """The model id of Σ c_i θ_i: the model itself for a single coefficient of 1, else mix.{hash}."""
    recipe = {m: float(c) for m, c in recipe.items() if float(c) != 0.0}
    if len(recipe) == 1 and next(iter(recipe.values())) == 1.0:
        return next(iter(recipe))
    canonical = json.dumps(sorted((m, round(c, 10)) for m, c in recipe.items()))
    return "mix." + hashlib.sha1(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Point:
    model_id: str
    recipe: tuple[tuple[str, float], ...]  # (stored model id, coefficient)
    eval_datasets: tuple[str, ...]
    # where the point sits in its study: line (pair, relation, alpha), plane (u, v), region (group, kind)
    info: tuple[tuple[str, object], ...]

    def as_row(self) -> dict:
        return dict(self.info, model_id=self.model_id)


def _point(recipe: dict[str, float], eval_datasets, **info) -> Point:
    clean = tuple((m, float(c)) for m, c in recipe.items() if float(c) != 0.0)
    return Point(point_id(dict(clean)), clean, tuple(eval_datasets), tuple(info.items()))


def _dataset(model_id: str) -> str | None:
    return study.parse(model_id).dataset


def _eval_sets(config: dict, section: dict, models) -> list[str]:
    if section.get("evaluate_on", "ends") == "all":
        return study.datasets(config)
    return sorted({_dataset(m) for m in models if _dataset(m)})


def candidate_pairs(config: dict, relation: str) -> list[tuple[str, str]]:
    models = study.finetuned_ids(config)
    if relation == "pretrained":
        return [(study.PRETRAINED, m) for m in models]
    pairs = []
    for a, b in itertools.combinations(models, 2):
        da, db = _dataset(a), _dataset(b)
        ta, tb = study.task_of(config, da), study.task_of(config, db)
        kind = "same_dataset" if da == db else "same_task" if ta == tb else "cross_task"
        if kind == relation:
            pairs.append((a, b))
    return pairs


def lines(config: dict) -> list[Point]:
    section = config.get("interpolation", {})
    if not section.get("enabled", True):
        return []
    rng = np.random.default_rng(section.get("seed", 0))
    per_relation = section.get("pairs_per_relation", 1)
    alphas = section.get("alphas", [-0.5, 0.0, 0.5, 1.0, 1.5])
    points = []
    for relation in section.get("relations", list(RELATIONS)):
        pairs = candidate_pairs(config, relation)
        if not pairs:
            continue
        chosen = sorted(rng.choice(len(pairs), size=min(per_relation, len(pairs)), replace=False))
        for index in chosen:
            a, b = pairs[index]
            for alpha in alphas:
                points.append(_point({a: 1.0 - alpha, b: alpha}, _eval_sets(config, section, (a, b)),
                                     study="line", relation=relation, model_a=a, model_b=b, alpha=float(alpha)))
    return points


def plane_triples(config: dict, kind: str) -> list[tuple[str, str, str]]:
    models = study.finetuned_ids(config)
    triples = []
    if kind == "same_task":  # two seeds of one dataset and a model of another dataset of the same task
        for a, b in candidate_pairs(config, "same_dataset"):
            for c in models:
                if _dataset(c) != _dataset(a) and study.task_of(config, _dataset(c)) == study.task_of(config, _dataset(a)):
                    triples.append((a, b, c))
    elif kind == "pretrained":  # the base and models of two tasks
        for b, c in candidate_pairs(config, "cross_task"):
            triples.append((study.PRETRAINED, b, c))
    return triples


def planes(config: dict) -> list[Point]:
    section = config.get("interpolation", {}).get("planes", {})
    if not section.get("enabled", True) or not config.get("interpolation", {}).get("enabled", True):
        return []
    rng = np.random.default_rng(section.get("seed", 1))
    grid = section.get("grid", [-0.25, 0.0, 0.5, 1.0, 1.25])
    points = []
    for kind in section.get("kinds", list(PLANE_KINDS)):
        triples = plane_triples(config, kind)
        if not triples:
            continue
        for index in sorted(rng.choice(len(triples), size=min(section.get("count", 1), len(triples)), replace=False)):
            a, b, c = triples[index]
            plane = f"{kind}:{a}|{b}|{c}"
            for u, v in itertools.product(grid, grid):
                points.append(_point({a: 1.0 - u - v, b: u, c: v}, _eval_sets(config, section, (a, b, c)),
                                     study="plane", plane=plane, kind=kind, model_a=a, model_b=b, model_c=c,
                                     u=float(u), v=float(v)))
    return points


def region_points(config: dict) -> list[Point]:
    """Per group (a dataset's seeds, a task's models): the centroid and Dirichlet samples."""
    section = config.get("region", {})
    if not section.get("enabled", True):
        return []
    rng = np.random.default_rng(section.get("seed", 2))
    groups: dict[str, tuple[str, list[str]]] = {}
    models = study.finetuned_ids(config)
    for level in section.get("groups", ["dataset", "task"]):
        for model in models:
            name = _dataset(model) if level == "dataset" else study.task_of(config, _dataset(model))
            groups.setdefault(f"{level}:{name}", (level, []))[1].append(model)
    points = []
    for group, (level, members) in groups.items():
        if len(members) < 2:
            continue
        evals = sorted({_dataset(m) for m in members})
        points.append(_point({m: 1.0 / len(members) for m in members}, evals,
                             study="region", group=group, level=level, kind="centroid", sample=-1))
        weights = rng.dirichlet([section.get("concentration", 1.0)] * len(members), size=section.get("samples", 3))
        for i, w in enumerate(weights):
            points.append(_point(dict(zip(members, w)), evals,
                                 study="region", group=group, level=level, kind="sample", sample=i))
        for m in members:  # the members themselves, for "is the centre better than the edges?"
            points.append(_point({m: 1.0}, evals, study="region", group=group, level=level, kind="member", sample=-1))
    return points


def all_points(config: dict) -> list[Point]:
    return lines(config) + planes(config) + region_points(config)


def mix_recipes(config: dict) -> dict[str, tuple[tuple[str, float], ...]]:
    """mix model id -> its recipe, for every mix the study evaluates."""
    return {p.model_id: p.recipe for p in all_points(config) if p.model_id.startswith("mix.")}


def evaluations(config: dict) -> set[tuple[str, str]]:
    """(model id, dataset) pairs whose probe results the traversal studies need."""
    return {(p.model_id, d) for p in all_points(config) for d in p.eval_datasets}
