"""Probe results on disk: how evaluation jobs write them and how every consumer reads them back.

An evaluation job writes one JSON file (results/probe/models/{model_id}.json,
results/probe/groups/{group}.json) holding a list of results, one per (model id, dataset)
pair, each with the test loss and accuracy, the per-example test losses in test-split
order ("test_losses", for paired comparisons over the same examples), the label-prior
loss ("prior") and the L2 strength used. `read` gives (model id, dataset) -> result for
any number of such files, and also reads one-result files of the older layout
(results/probe/{model_id}/{dataset}.json).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from weightspace import WeightspaceError
from weightspace.atomic import write_json

FORMAT = "weightspace-probe-results-v1"


def write(path: str | Path, results: list[dict], job: dict | None = None) -> None:
    for result in results:
        if "model_id" not in result or "dataset" not in result:
            raise WeightspaceError(
                f"a probe result needs model_id and dataset: {sorted(result)[:8]}"
            )
    write_json(path, {"format": FORMAT, "job": job or {}, "results": results})


def _results_of(path: Path) -> list[dict]:
    if not path.exists():
        raise WeightspaceError(f"probe results file {path} is missing")
    try:
        content = json.loads(path.read_text())
    except ValueError as err:
        raise WeightspaceError(f"probe results file {path} is not JSON: {err}") from None
    if isinstance(content, dict) and "results" in content:
        return list(content["results"])
    # one result: .../probe/{model_id}/{dataset}.json
    if isinstance(content, dict) and "loss" in content:
        return [
            dict(
                content,
                model_id=content.get("model_id") or path.parent.name,
                dataset=content.get("dataset") or path.stem,
            )
        ]
    raise WeightspaceError(
        f"probe results file {path} holds neither a result nor a list of results"
    )


def read(paths: Iterable[str | Path]) -> dict[tuple[str, str], dict]:
    """(model id, dataset) -> probe result, over every file;
    a pair found twice is read once (first wins)."""
    out: dict[tuple[str, str], dict] = {}
    for path in map(Path, paths):
        for result in _results_of(path):
            out.setdefault((result["model_id"], result["dataset"]), result)
    return out


def job_info(path: str | Path) -> dict:
    """What the job that wrote ``path`` computed and found cached (features, probes, seconds)."""
    return dict(json.loads(Path(path).read_text()).get("job", {}))
