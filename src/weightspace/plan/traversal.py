"""Points of the region between models: interpolation lines, planes, Dirichlet samples, fused bases.

Every point is a *mix*: a linear combination Σ c_i θ_i of stored encoder weights. A mix
is named by a hash of its recipe, so the same point asked for twice (by two lines, or
again in a later run) is one model with one set of cached features and probe results;
a recipe of one model with coefficient 1 is that model itself (α=0 and α=1 of a line
are its endpoints, exactly).

Which lines, planes and samples a study has is decided by stable hashes of names, never by
a draw over a list that grows, so that adding a dataset or a seed leaves every existing
point, and its cached results, as it was. The rule:

* Candidates come in *groups* named by datasets alone: a dataset (same_dataset and
  pretrained lines), a pair of datasets (same_task and cross_task lines, planes).
* A group is studied when a hash of (seed, relation, its dataset names) falls below the
  relation's ``fraction`` — a coin per group that no other dataset can flip.
* A studied group takes its first ``pairs_per_relation`` (planes: ``count``) seed
  combinations in an order where combinations with a higher seed rank come later (seeds
  by value), so a new, larger seed only appends combinations and never displaces one.
* A region group's Dirichlet samples are drawn from a generator seeded by a hash of the
  group's members: an unchanged group keeps its samples; a group that gains a member (a
  new seed, a new dataset of its task) is a new group with its own.

No rule that keeps old choices can hold the number of lines fixed: a pair chosen in a
study of its two datasets must stay chosen in every larger study, so a stable choice is
one decision per candidate and the count grows with the candidates; ``fraction`` sets
the rate.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

import numpy as np

from weightspace import WeightspaceError, study

RELATIONS = ("same_dataset", "same_task", "cross_task", "pretrained")
PLANE_KINDS = ("same_task", "pretrained")


def point_id(recipe: dict[str, float]) -> str:
    """The model id of Σ c_i θ_i: the model itself for a single coefficient of 1, else
    mix.{hash}."""
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
    # where the point sits in its study: line (pair, relation, alpha), plane (u, v), region (group,
    # kind)
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


def _score(*parts) -> float:
    """A number in [0, 1) fixed by the parts alone (sha1): the coin that decides whether a group is
    studied."""
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return int(digest[:13], 16) / 16**13


def _seed_order(config: dict) -> list[int]:
    return sorted(set(study.seeds(config)))


def _combinations(
    sizes: tuple[int, ...], distinct_first_two: bool = False
) -> list[tuple[int, ...]]:
    """Tuples of seed ranks, those with a smaller highest rank first: adding a seed (a higher rank)
    only appends. distinct_first_two: the first two ranks index seeds of one dataset, so they must
    differ (i < j)."""
    combos = [
        c
        for c in itertools.product(*(range(n) for n in sizes))
        if not distinct_first_two or c[0] < c[1]
    ]
    return sorted(combos, key=lambda c: (max(c), c))


def _fraction(section: dict, key: str) -> float:
    fraction = section.get("fraction", 1.0)
    return float(fraction.get(key, 1.0) if isinstance(fraction, dict) else fraction)


def _relation(config: dict, a: str, b: str) -> str:
    return "same_task" if study.task_of(config, a) == study.task_of(config, b) else "cross_task"


def candidate_pairs(config: dict, relation: str) -> list[tuple[str, str]]:
    """Every pair of models of a relation (the population the studied lines are chosen from)."""
    models = study.finetuned_ids(config)
    if relation == "pretrained":
        return [(study.PRETRAINED, m) for m in models]
    dataset = {m: _dataset(m) for m in models}
    task = {d: study.task_of(config, d) for d in set(dataset.values())}

    def kind(a: str, b: str) -> str:
        da, db = dataset[a], dataset[b]
        return "same_dataset" if da == db else "same_task" if task[da] == task[db] else "cross_task"

    return [(a, b) for a, b in itertools.combinations(models, 2) if kind(a, b) == relation]


def line_groups(config: dict, relation: str) -> list[tuple[str, ...]]:
    """The groups of a relation, as sorted dataset names: one dataset, or a pair of datasets."""
    names = sorted(study.datasets(config))
    if relation in ("same_dataset", "pretrained"):
        return [(d,) for d in names]
    return [
        (a, b) for a, b in itertools.combinations(names, 2) if _relation(config, a, b) == relation
    ]


def chosen_pairs(config: dict, relation: str) -> list[tuple[str, str]]:
    """The pairs of models whose lines are studied (see the module's rule)."""
    section = config.get("interpolation", {})
    seeds, per_group = _seed_order(config), section.get("pairs_per_relation", 1)
    fraction, seed = _fraction(section, relation), section.get("seed", 0)
    model = study.finetuned_id
    pairs = []
    for group in line_groups(config, relation):
        if _score(seed, "line", relation, *group) >= fraction:
            continue
        if relation == "same_dataset":
            combos = _combinations((len(seeds), len(seeds)), distinct_first_two=True)
            pairs += [
                (model(group[0], seeds[i]), model(group[0], seeds[j]))
                for i, j in combos[:per_group]
            ]
        elif relation == "pretrained":
            pairs += [
                (study.PRETRAINED, model(group[0], seeds[i]))
                for (i,) in _combinations((len(seeds),))[:per_group]
            ]
        else:
            combos = _combinations((len(seeds), len(seeds)))
            pairs += [
                (model(group[0], seeds[i]), model(group[1], seeds[j]))
                for i, j in combos[:per_group]
            ]
    return pairs


CHOSEN = "chosen"  # the relation of the lines a config names itself (interpolation.chosen)


def chosen_lines(config: dict) -> list[tuple[str, str]]:
    """The lines the config names between two stored models (brought ones included); an end that
    is no stored model of the study is named in the error."""
    pairs = [tuple(p) for p in config.get("interpolation", {}).get("chosen") or []]
    stored = {study.PRETRAINED, *study.finetuned_ids(config), *study.brought_ids(config)}
    for pair in pairs:
        unknown = [m for m in pair if m not in stored]
        if unknown or pair[0] == pair[1]:
            raise WeightspaceError(
                f"config key interpolation.chosen: {list(pair)} needs two distinct stored models "
                f"(pretrained, {{dataset}}.seed{{n}}, brought.{{name}}); not one: {unknown or pair}"
            )
    return pairs


def _line_datasets(config: dict, section: dict, ends) -> list[str]:
    """A chosen line's evaluation datasets: its ends' study datasets (labels of brought models
    included), else every dataset."""
    if section.get("evaluate_on", "ends") == "all":
        return study.datasets(config)
    labels = {m: d for m, d, _ in study.labelled_models(config)}
    found = sorted({labels[m] for m in ends if labels.get(m) in config["datasets"]})
    return found or study.datasets(config)


def lines(config: dict) -> list[Point]:
    section = config.get("interpolation", {})
    if not section.get("enabled", True):
        return []
    alphas = section.get("alphas", [-0.5, 0.0, 0.5, 1.0, 1.5])
    extrapolate = set(section.get("extrapolate", RELATIONS))
    points = []
    relations = [(r, chosen_pairs(config, r)) for r in section.get("relations", list(RELATIONS))]
    for relation, pairs in [*relations, (CHOSEN, chosen_lines(config))]:
        # beyond the ends only where it is studied: a point outside [0, 1] costs as much as one
        # inside
        kept = [a for a in alphas if relation in extrapolate or 0.0 <= a <= 1.0]
        for a, b in pairs:
            evals = (
                _line_datasets(config, section, (a, b))
                if relation == CHOSEN
                else _eval_sets(config, section, (a, b))
            )
            for alpha in kept:
                points.append(
                    _point(
                        {a: 1.0 - alpha, b: alpha},
                        evals,
                        study="line",
                        relation=relation,
                        model_a=a,
                        model_b=b,
                        alpha=float(alpha),
                    )
                )
    return points


def plane_triples(config: dict, kind: str) -> list[tuple[str, str, str]]:
    """The studied planes' (origin, u-end, v-end) models.

    same_task: two seeds of one dataset and a model of another dataset of its task; the group is the
    pair of datasets, and which of the two gives the two seeds is a coin of the pair too.
    pretrained: the base and models of two datasets of different tasks.
    """
    section = config.get("interpolation", {}).get("planes", {})
    seeds, count = _seed_order(config), section.get("count", 1)
    fraction, seed = _fraction(section, kind), section.get("seed", 1)
    model = study.finetuned_id
    triples = []
    for a, b in line_groups(config, "same_task" if kind == "same_task" else "cross_task"):
        if _score(seed, "plane", kind, a, b) >= fraction:
            continue
        if kind == "same_task":
            if _score(seed, "plane-orientation", a, b) >= 0.5:
                a, b = b, a
            combos = _combinations((len(seeds), len(seeds), len(seeds)), distinct_first_two=True)
            triples += [
                (model(a, seeds[i]), model(a, seeds[j]), model(b, seeds[k]))
                for i, j, k in combos[:count]
            ]
        else:
            combos = _combinations((len(seeds), len(seeds)))
            triples += [
                (study.PRETRAINED, model(a, seeds[i]), model(b, seeds[j]))
                for i, j in combos[:count]
            ]
    return triples


def planes(config: dict) -> list[Point]:
    section = config.get("interpolation", {}).get("planes", {})
    if not section.get("enabled", True) or not config.get("interpolation", {}).get("enabled", True):
        return []
    grid = section.get("grid", [-0.25, 0.0, 0.5, 1.0, 1.25])
    points = []
    for kind in section.get("kinds", list(PLANE_KINDS)):
        for a, b, c in plane_triples(config, kind):
            plane = f"{kind}:{a}|{b}|{c}"
            evals = _eval_sets(config, section, (a, b, c))
            for u, v in itertools.product(grid, grid):
                points.append(
                    _point(
                        {a: 1.0 - u - v, b: u, c: v},
                        evals,
                        study="plane",
                        plane=plane,
                        kind=kind,
                        model_a=a,
                        model_b=b,
                        model_c=c,
                        u=float(u),
                        v=float(v),
                    )
                )
    return points


def region_points(config: dict) -> list[Point]:
    """Per group (a dataset's seeds, a task's models): the centroid and Dirichlet samples.

    The samples come from a generator seeded by a hash of the group's members: they are the same in
    every study that has this group with exactly these members."""
    section = config.get("region", {})
    if not section.get("enabled", True):
        return []
    groups: dict[str, tuple[str, list[str]]] = {}
    # the fine-tunes, and brought models labelled with a dataset of this study: they join its
    # dataset's and task's regions
    labels = {m: (d, t) for m, d, t in study.labelled_models(config) if d in config["datasets"]}
    for level in section.get("groups", ["dataset", "task"]):
        for model, (dataset, task) in labels.items():
            name = dataset if level == "dataset" else task
            groups.setdefault(f"{level}:{name}", (level, []))[1].append(model)
    points = []
    for group, (level, members) in groups.items():
        if len(members) < 2:
            continue
        members = sorted(members)
        evals = sorted({labels[m][0] for m in members})
        if level == "task" and len(evals) < 2 and "dataset:" + evals[0] in groups:
            continue  # a one-dataset task's region is its dataset's: a copy would count it twice
        points.append(
            _point(
                {m: 1.0 / len(members) for m in members},
                evals,
                study="region",
                group=group,
                level=level,
                kind="centroid",
                sample=-1,
            )
        )
        key = int(_score(section.get("seed", 2), "region", group, *members) * 2**52)
        rng = np.random.default_rng(key)
        weights = rng.dirichlet(
            [section.get("concentration", 1.0)] * len(members), size=section.get("samples", 3)
        )
        for i, w in enumerate(weights):
            points.append(
                _point(
                    dict(zip(members, w)),
                    evals,
                    study="region",
                    group=group,
                    level=level,
                    kind="sample",
                    sample=i,
                )
            )
        for m in members:  # the members themselves, for "is the centre better than the edges?"
            points.append(
                _point(
                    {m: 1.0},
                    evals,
                    study="region",
                    group=group,
                    level=level,
                    kind="member",
                    sample=-1,
                )
            )
    return points


def all_points(config: dict) -> list[Point]:
    return lines(config) + planes(config) + region_points(config)


def mix_recipes(config: dict) -> dict[str, tuple[tuple[str, float], ...]]:
    """mix model id -> its recipe, for every mix the study evaluates."""
    return {p.model_id: p.recipe for p in all_points(config) if p.model_id.startswith("mix.")}


def evaluations(config: dict) -> set[tuple[str, str]]:
    """(model id, dataset) pairs whose probe results the traversal studies need."""
    return {(p.model_id, d) for p in all_points(config) for d in p.eval_datasets}


# ---------------------------------------------------------------- traversal groups


def group_name(row: dict) -> str:
    """The job a traversal point is evaluated in: its relation's lines (or kind's planes) that start
    at one dataset, or its region group. So the number of these jobs grows as the datasets, not as
    the lines."""
    kind = row.get("study")
    if kind == "line" and row.get("relation") == CHOSEN:  # a few lines: one job
        return "line.chosen.all"
    if kind in ("line", "plane"):
        ends = [row[k] for k in ("model_a", "model_b", "model_c") if row.get(k)]
        names = sorted({study.parse(m).dataset for m in ends} - {None}) or ["pretrained"]
        return f"{kind}.{row['relation'] if kind == 'line' else row['kind']}.{names[0]}"
    if kind == "region":
        return "region." + str(row["group"]).replace(":", ".")
    raise WeightspaceError(f"traversal point of unknown study '{kind}': {row}")


GROUP_PATTERN = r"(line|plane|region)\.[A-Za-z0-9_.~-]+"
