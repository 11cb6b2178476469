"""What a study costs: GPU-hours and disk, estimated from its plan and its datasets' sizes."""

from __future__ import annotations

from weightspace import WeightspaceError
from weightspace.data import registry
from weightspace.plan import fusion
from weightspace.plan.study_plan import StudyPlan


def builtin_source_sizes(config: dict) -> dict[str, tuple[int, int]]:
    """dataset -> (train, test) examples in its packaged source before the config's caps, for
    ``estimate``; where the source has no test split, the preparation's split of test_fraction.
    Builtin datasets only."""
    sizes = {}
    for name, spec in config["datasets"].items():
        if "builtin" not in spec:
            raise WeightspaceError(
                f"datasets.{name}: not a builtin dataset; its source size is not known offline"
            )
        raw = registry.load(spec["builtin"])
        train = len(raw["train"])
        test = len(raw["test"]) if "test" in raw else 0
        if not test:  # the preparation splits test_fraction off
            fraction = spec.get("test_fraction", config["data"].get("test_fraction", 0.2))
            test = round(fraction * train)
            train -= test
        sizes[name] = (train, test)
    return sizes


def estimate(
    config: dict,
    plan: StudyPlan,
    sizes: dict[str, tuple[int, int]],
    train_examples_per_second: float,
    encode_examples_per_second: float,
    encoder_parameters: int,
    head_parameters: int,
    hidden: int,
) -> dict:
    """An estimate of a study's GPU-hours and disk from its config and its datasets' sizes.

    ``sizes``: dataset -> (train, test) examples in the source, before the config's caps.
    Fine-tuning is counted at its upper bound (every epoch, no early stop, max_steps respected) plus
    a validation pass per epoch (`finetune.validation: epoch`) and a final one; evaluation is one
    encoder pass over a dataset's train and test split per (model, dataset) pair that the plan
    probes (StudyPlan.probed), and per mix of the traversal studies; disk is the weights files, the
    fine-tuned models and the features, float32.
    """
    data = config.get("data", {})
    caps = data.get("max_examples") or {}
    fraction = data.get("validation_fraction", 0.1)

    def capped(name: str) -> tuple[int, int, int]:
        train, test = sizes[name]
        spec_caps = {**caps, **(config["datasets"][name].get("max_examples") or {})}
        validation = round(fraction * train)
        train -= validation
        cap = lambda n, split: min(n, spec_caps.get(split) or n)  # noqa: E731
        return cap(train, "train"), cap(validation, "validation"), cap(test, "test")

    ft = config["finetune"]

    def finetune_seconds(name: str, settings: dict | None = None, size: str = "all") -> float:
        settings = {**ft, **(settings or {})}
        train, validation, test = capped(name)
        if size != "all":  # a few-shot fusion run
            train = min(train, int(size))
        steps = settings["epochs"] * -(-train // settings["batch_size"])
        if settings.get("max_steps"):
            steps = min(steps, settings["max_steps"])
        trained = steps * settings["batch_size"]
        per_epoch = settings["epochs"] if settings.get("validation", "epoch") == "epoch" else 0
        evaluated = per_epoch * validation + validation + test
        return trained / train_examples_per_second + evaluated / encode_examples_per_second

    counts = plan.job_counts()
    main = sum(finetune_seconds(d) for d in plan.datasets) * len(plan.seeds)
    runs = [r for r in plan.fusion_runs if not plan.reused(r)]
    from_fused = sum(
        finetune_seconds(r.target, fusion.section(config).get("finetune"), r.size) for r in runs
    )
    stored = 1 + counts["finetune"] + counts["fuse"]
    stored_pairs = [(m, d) for m, names in plan.probed.items() for d in names]
    mix_pairs = {p for p in plan.evaluations() if p[0] in plan.mixes}
    pairs = len(stored_pairs) + len(mix_pairs)
    per_dataset = {d: sum(capped(d)[::2]) for d in plan.datasets}
    encoded = sum(per_dataset[d] for _, d in stored_pairs) + sum(
        per_dataset[d] for _, d in mix_pairs
    )
    gb = 1e9
    return {
        "models_stored": stored,
        "mixes": len(plan.mixes),
        "probe_pairs": pairs,
        "gpu_hours_finetune": main / 3600,
        "gpu_hours_finetune_from": from_fused / 3600,
        "gpu_hours_evaluate": encoded / encode_examples_per_second / 3600,
        "disk_weights_gb": stored * encoder_parameters * 4 / gb,
        "disk_models_gb": counts["finetune"] * (encoder_parameters + head_parameters) * 4 / gb,
        "disk_features_gb": encoded * hidden * 4 / gb,
    }
