"""The study plan: which models, runs, points and evaluations a config makes, built once.

`build(config)` reads a validated, default-filled config and returns a frozen `StudyPlan`. The rules
(rules/common.smk), the job counts, the cost estimate and the start-up checks read this one object,
so the question "which jobs does this config make?" has one answer. Planning is pure: no file is
read, nothing is imported from Snakemake, and building the plan twice from one config gives equal
plans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from weightspace import WeightspaceError, study
from weightspace.plan import fusion, starts, traversal
from weightspace.plan.fusion import FusedBase, Run
from weightspace.plan.traversal import Point

Recipe = tuple[tuple[str, float], ...]  # (stored model id, coefficient)


def _frozen(mapping: dict) -> Mapping:
    return MappingProxyType(mapping)


@dataclass(frozen=True, eq=False)
class StudyPlan:
    """Everything a config makes, by name. Mappings are read-only views; sequences are tuples."""

    datasets: tuple[str, ...]
    task_of: Mapping[str, str]  # dataset -> task
    seeds: tuple[int, ...]
    finetuned: tuple[str, ...]  # fine-tuned model ids, dataset-major
    brought: tuple[str, ...]  # the user's own checkpoints (config key models)
    fused: Mapping[str, FusedBase]  # fused or merged model id -> its members and method
    fusion_seeds: tuple[int, ...]
    fusion_runs: tuple[Run, ...]  # the pretrained start and the fused bases (the mean)
    merge_runs: tuple[Run, ...]  # the merged bases, twins of their mean's runs
    # fusion runs that are the main fine-tune itself (no job of their own)
    reused_runs: frozenset[Run]
    points: tuple[Point, ...]  # every traversal point: lines, planes, regions
    mixes: Mapping[str, Recipe]  # mix id -> its recipe (a point that is not a stored model)
    groups: Mapping[str, tuple[Point, ...]]  # traversal group (one evaluation job) -> its points
    # the traversal studies with points ('line', 'plane', 'region'): each draws a figure, a study
    # that is off or empty draws none
    traversal_studies: frozenset[str]
    # stored model id -> the datasets its evaluation job probes
    probed: Mapping[str, tuple[str, ...]]
    # where to start: target -> its candidate starts (model id -> kind)
    start_candidates: Mapping[str, Mapping[str, str]]
    start_mode: str  # use | evaluate
    start_top_k: int
    start_sizes: tuple[str, ...]

    # ------------------------------------------------------------ models

    @property
    def stored_models(self) -> list[str]:
        """Every stored model: the pretrained encoder, the fine-tunes and the fused bases (the
        geometry's rows)."""
        return [study.PRETRAINED, *self.finetuned, *self.brought, *self.fused]

    def recipe(self, model_id: str) -> Recipe:
        """The stored models and coefficients whose combination is this model's encoder."""
        if model_id in self.mixes:
            return self.mixes[model_id]
        return ((model_id, 1.0),)

    def reused(self, run: Run) -> bool:
        return run in self.reused_runs

    def fusion_jobs(self) -> list[tuple[str, str, str, str]]:
        """(target, start, mode, size) of each finetune_from job the plan knows before any result:
        one job runs a start's fusion seeds. Use mode's top-k starts follow from the rankings."""
        runs = self.fusion_runs + self.merge_runs
        if self.start_mode == "evaluate":
            for target in self.start_targets:
                runs += self.start_runs(target, self.start_candidates[target])
        return sorted({(r.target, r.base, r.mode, r.size) for r in runs if not self.reused(r)})

    # ------------------------------------------------------------ where to start

    @property
    def start_targets(self) -> list[str]:
        return list(self.start_candidates)

    def start_runs(self, target: str, chosen) -> tuple[Run, ...]:
        """The runs of a target from the chosen starts (use mode: the top k and pretrained)."""
        return starts.runs(target, chosen, self.start_sizes, self.fusion_seeds)

    # ------------------------------------------------------- traversal groups (evaluate_group jobs)

    def _mix_points(self, group: str) -> list[Point]:
        return [p for p in self.groups[group] if p.model_id in self.mixes]

    def group_pairs(self, group: str) -> list[tuple[str, str]]:
        """(mix id, dataset) pairs a group's job evaluates; its stored models are evaluated by their
        own jobs."""
        return sorted({(p.model_id, d) for p in self._mix_points(group) for d in p.eval_datasets})

    def group_recipes(self, group: str) -> dict[str, Recipe]:
        return {p.model_id: self.mixes[p.model_id] for p in self._mix_points(group)}

    def group_datasets(self, group: str) -> list[str]:
        return sorted({d for _, d in self.group_pairs(group)})

    def group_members(self, group: str) -> list[str]:
        """The stored models a group's mixes are built from (the job's weights inputs)."""
        return sorted({m for recipe in self.group_recipes(group).values() for m, _ in recipe})

    def traversal_stored_models(self) -> list[str]:
        """Stored models that are traversal points themselves (line ends, region members)."""
        return sorted({p.model_id for p in self.points if p.model_id not in self.mixes})

    def evaluations(self) -> set[tuple[str, str]]:
        """(model id, dataset) pairs whose probe results the traversal studies read."""
        return {(p.model_id, d) for p in self.points for d in p.eval_datasets}

    # ------------------------------------------------------------ size

    def job_counts(self) -> dict[str, int]:
        """Jobs per rule that follow from the datasets, seeds and fusion alone.

        A fine-tune writes its encoder weights itself: no extraction job but the pretrained one's.
        The fusion run of the pretrained start on all the data with the study's own recipe is the
        main fine-tune, reused.
        """
        return {
            "base_model": 1,
            "prepare_dataset": len(self.datasets),
            "finetune": len(self.finetuned),
            "extract_pretrained_weights": 1,
            "import_model": len(self.brought),
            "fuse": sum(b.method == fusion.MEAN for b in self.fused.values()),
            "merge": sum(b.method != fusion.MEAN for b in self.fused.values()),
            "finetune_from": len(self.fusion_jobs()),
        }


def _reused(config: dict, run: Run, fusion_seeds: list[int]) -> bool:
    """Whether a fusion run is the main fine-tune itself: the pretrained start on all the data with
    the study's own recipe, and every fusion seed a study seed (one job runs a start's seeds: reused
    whole or not at all)."""
    same_recipe = study.fusion_settings(config, run.target, run.mode, run.size) == dict(
        study.finetune_settings(config, run.target), train_size=None
    )
    return (
        run.base == study.PRETRAINED
        and run.mode == "full"
        and run.size == "all"
        and same_recipe
        and set(fusion_seeds) <= set(study.seeds(config))
    )


def _probed(
    config: dict,
    names: list[str],
    finetuned: list[str],
    fused: list[FusedBase],
    evaluations: set[tuple[str, str]],
) -> dict[str, tuple[str, ...]]:
    """Stored model id -> the datasets its evaluation job probes it on.

    The pretrained model: every dataset (it is every probe's baseline). A fine-tuned model: every
    dataset (`probe.scope: all`) or its own task's (`task`), plus any dataset a traversal study
    reads at that model. A fused base: its target only, where fusion fine-tunes it (its other cells
    would repeat its members').
    """
    scope = config.get("probe", {}).get("scope", "all")
    task_of = {d: study.task_of(config, d) for d in names}
    by_task = {
        task: tuple(d for d in names if scope == "all" or task_of[d] == task)
        for task in set(task_of.values())
    }
    wanted: dict[str, set[str]] = {}
    if scope != "all":  # (under 'all' a model's own datasets are every dataset already)
        for model_id, dataset in evaluations:
            wanted.setdefault(model_id, set()).add(dataset)
    probed = {study.PRETRAINED: tuple(names)}
    for model_id in finetuned:
        task = task_of[study.parse(model_id).dataset]
        ends = wanted.get(model_id)
        probed[model_id] = (
            tuple(d for d in names if task_of[d] == task or d in ends) if ends else by_task[task]
        )
    for model_id in study.brought_ids(config):  # a map of a zoo: every model on every dataset
        probed[model_id] = tuple(names)
    for base in fused:
        probed[base.model_id] = (base.target,)
    return probed


def build(config: dict) -> StudyPlan:
    """The plan of a validated, default-filled config."""
    names = study.datasets(config)
    finetuned = study.finetuned_ids(config)
    fused = fusion.fused_bases(config) + fusion.merged_bases(config)
    fusion_seeds = fusion.seeds(config)
    runs = fusion.runs(config)
    if runs and not fusion_seeds:
        raise WeightspaceError("config key fusion.seeds: fusion runs need at least one seed")
    candidates = {t: starts.candidates(config, t, fused) for t in starts.targets(config)}
    # a candidate is ranked by its probe on the target (under probe.scope 'task' a fine-tune is
    # not probed on other tasks' datasets otherwise)
    start_evaluations = {(m, t) for t, chosen in candidates.items() for m in chosen}
    points = traversal.all_points(config)
    groups: dict[str, list[Point]] = {}
    studies = set()
    for point in points:
        row = point.as_row()
        groups.setdefault(traversal.group_name(row), []).append(point)
        studies.add(row["study"])
    evaluations = {(p.model_id, d) for p in points for d in p.eval_datasets} | start_evaluations
    # runs that may be a main fine-tune itself: fusion's, and each target's pretrained start
    start_sizes = tuple(starts.sizes(config))
    reusable = [*runs]
    for target in candidates:
        reusable += starts.runs(target, [study.PRETRAINED], start_sizes, fusion_seeds)
    return StudyPlan(
        datasets=tuple(names),
        task_of=_frozen({d: study.task_of(config, d) for d in names}),
        seeds=tuple(study.seeds(config)),
        finetuned=tuple(finetuned),
        brought=tuple(study.brought_ids(config)),
        fused=_frozen({b.model_id: b for b in fused}),
        fusion_seeds=tuple(fusion_seeds),
        fusion_runs=tuple(runs),
        merge_runs=tuple(fusion.merge_runs(config)),
        reused_runs=frozenset(r for r in reusable if _reused(config, r, fusion_seeds)),
        points=tuple(points),
        mixes=_frozen({p.model_id: p.recipe for p in points if p.model_id.startswith("mix.")}),
        groups=_frozen({g: tuple(ps) for g, ps in groups.items()}),
        traversal_studies=frozenset(studies),
        probed=_frozen(_probed(config, names, finetuned, fused, evaluations)),
        start_candidates=_frozen({t: _frozen(c) for t, c in candidates.items()}),
        start_mode=starts.section(config).get("mode", "use"),
        start_top_k=int(starts.section(config).get("top_k", 3)),
        start_sizes=start_sizes,
    )
