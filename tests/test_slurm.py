"""Real SLURM: the whole tiny study goes through sbatch on a one-node cluster on this machine and
matches a local run; a fine-tune that SLURM kills at its time limit is resubmitted and resumes from
its checkpoint; a fine-tune cancelled with SIGTERM (what preemption and scancel send) resumes on the
rerun; and a study of 10 datasets x 2 seeds needs a bounded number of submissions.

The cluster comes from tests/slurm/cluster.sh (root, Debian: it installs slurm-wlm when missing);
without root or apt the tests skip, unless CI or WEIGHTSPACE_REQUIRE_SLURM=1 is set, where they
fail. The submissions count needs no cluster: it reads a dry run with the SLURM profile, the way the
whole-study test checks against what sbatch really received.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO
from tiny_study import SNAKEMAKE, planned_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
CLUSTER_DIR = Path(tempfile.gettempdir()) / "weightspace-slurm"
# The profile as a user runs it, plus what a cluster without slurmdbd needs (squeue for job states)
# and short waits, so that a test does not sit idle between status checks.
SLURM_ARGS = (
    "--profile",
    str(REPO / "profiles" / "slurm"),
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--seconds-between-status-checks",
    "1",
    "--latency-wait",
    "5",
    "--slurm-keep-successful-logs",
)
# a job's id is its number, a group job's a UUID
SUBMITTED = re.compile(r"Job [0-9a-f-]+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
PROFILE = REPO / "profiles" / "slurm"


def local_rules() -> set[str]:
    """Rules that never go to SLURM: every `localrules:` block of the workflow (Snakefile and
    rules/*.smk), and `all`. (The hub-download rules join them only for hub sources, which the tests
    do not use.)"""
    names = {"all"}
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        for block in re.findall(
            r"^localrules:((?:[ \t]*\w+,?)?\n(?:[ \t]+\w+,?[ \t]*\n)*)", path.read_text(), re.M
        ):
            names.update(re.findall(r"\w+", block))
    return names


def planned_submissions(root: Path, *targets: str) -> Counter:
    """What the SLURM profile would submit for root/config.yaml, read off a dry run: one submission
    per job of a rule that is neither local nor grouped (key: the rule), one per group job (key:
    "group <name>")."""
    out = snakemake(root, "-n", "--profile", str(PROFILE), *targets).stdout
    local = local_rules()
    counts = Counter(f"group {name}" for name in re.findall(r"Group job (\S+) \(jobs", out))
    # top level only
    counts.update(rule for rule in re.findall(r"^rule (\w+):", out, re.M) if rule not in local)
    return counts


def _cluster_answers() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        result = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and bool({"idle", "mix", "alloc"} & set(result.stdout.split()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node SLURM cluster on this machine for the session; stopped afterwards by its daemons'
    pids. A cluster that already answers (someone's) is used as it is and left running."""
    if _cluster_answers():
        yield
        return
    required = bool(os.environ.get("CI")) or os.environ.get("WEIGHTSPACE_REQUIRE_SLURM") == "1"
    env = dict(os.environ, SLURM_LOCAL_DIR=str(CLUSTER_DIR))
    result = subprocess.run(
        ["bash", str(CLUSTER), "start"], env=env, capture_output=True, text=True, timeout=900
    )
    # not root / no apt: this machine cannot host a cluster
    if result.returncode in (3, 4) and not required:
        pytest.skip(f"no local SLURM cluster: {result.stderr.strip()}")
    if result.returncode != 0:
        subprocess.run(["bash", str(CLUSTER), "stop"], env=env, timeout=120)
        pytest.fail(
            f"tests/slurm/cluster.sh start failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    pids = [int(p.read_text()) for p in (CLUSTER_DIR / "run").glob("*.pid")]
    assert len(pids) >= 2, "slurmctld and slurmd pid files expected"
    try:
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop"], env=env, timeout=120)
        assert not [pid for pid in pids if _alive(pid)], (
            "the cluster's daemons still run after stop"
        )


def processes_under(folder: Path) -> list[int]:
    """Processes whose command line names this folder (a test's jobs and runs), other than this
    one."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if str(folder).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.fixture(autouse=True)
def _clean_up_jobs(tmp_path):
    """Whatever happened, leave no SLURM job of this test queued and none of its processes
    running."""
    yield
    if shutil.which("squeue"):
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, timeout=60
        )
        ids = [line.split()[0] for line in queue.stdout.splitlines() if str(tmp_path) in line]
        if ids:
            subprocess.run(["scancel", *ids], timeout=60)
    for pid in processes_under(tmp_path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _env(**extra) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", **extra)
    env.pop("SBATCH_ACCOUNT", None)  # the test cluster has no accounts
    return env


class Background:
    """A snakemake run in its own process group, its output in a file; killed (SIGKILL) at its
    deadline."""

    def __init__(self, root: Path, *args: str, env: dict, name: str):
        self.log = root.parent / f"{root.name}.{name}.out"
        # targets first: --configfile takes a list and would swallow them
        cmd = [
            SNAKEMAKE,
            *args,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(root),
            "--configfile",
            str(root / "config.yaml"),
        ]
        with open(self.log, "w") as handle:
            self.proc = subprocess.Popen(
                cmd,
                cwd=root,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, timeout: float) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            code = None
        output = self.log.read_text()
        if code is None:
            ids = [m.group(1) for m in SUBMITTED.finditer(output)]
            if ids:
                subprocess.run(["scancel", *ids], timeout=60)
            pytest.fail(f"snakemake did not finish in {timeout} s (killed):\n{output[-6000:]}")
        return code, output


def on_slurm(
    root: Path, *targets: str, extra: tuple[str, ...] = (), name: str = "slurm"
) -> Background:
    return Background(
        root, *targets, *SLURM_ARGS, *extra, env=_env(SBATCH_PARTITION="debug"), name=name
    )


def locally(root: Path, *targets: str, cores: int = 2) -> Background:
    return Background(root, *targets, "--cores", str(cores), env=_env(), name="local")


def submissions(output: str) -> list[tuple[str, Path]]:
    """(SLURM job id, SLURM log file) of every sbatch call, in order."""
    return [(m.group(1), Path(m.group(2))) for m in SUBMITTED.finditer(output)]


def submitted_as(log: Path, root: Path) -> str:
    """What a submission was, from its SLURM log's folder: .../slurm_logs/rule_<rule>/... or
    group_<name>_<rules>/."""
    folder = log.relative_to(root / ".snakemake" / "slurm_logs").parts[0]
    if folder.startswith("group_"):
        return "group " + folder.removeprefix("group_").split("_")[0]
    return folder.removeprefix("rule_")


def job_records() -> dict[str, dict]:
    """SLURM's job completion records (jobcomp/filetxt) by job id."""
    config = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout
    location = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, re.M)
    assert location and Path(location.group(1)).is_file(), (
        "the cluster keeps no job completion records (JobCompLoc)"
    )
    location = location.group(1)
    records = {}
    for line in Path(location).read_text().splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        records[fields["JobId"]] = fields
    return records


def same_tensors(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_whole_tiny_study_runs_through_sbatch_and_matches_a_local_run(slurm_cluster, tmp_path):
    config = tiny_config(tmp_path, {"alpha": "sentiment", "gamma_pairs": "nli"}, seeds=(0,))
    # two fusion fine-tunes (pretrained and fused start) keep it short
    config["fusion"].update(modes=["full"])
    roots = {where: tmp_path / where for where in ("slurm", "local")}
    for root in roots.values():
        root.mkdir()
        write_config(root, config)
    planned = planned_submissions(roots["slurm"])

    started = time.monotonic()
    local = locally(roots["local"], cores=1)  # alongside, leaving the SLURM jobs a core
    code, output = on_slurm(roots["slurm"]).wait(timeout=1500)
    slurm_seconds = time.monotonic() - started
    assert code == 0, output[-6000:]
    local_code, local_output = local.wait(timeout=600)
    assert local_code == 0, local_output[-6000:]
    assert "Error in rule" not in output  # no job needed a retry

    # every job that is not local went through sbatch, the short ones in groups, exactly as the dry
    # run said; every submission has its SLURM log and SLURM's completion record
    jobs = submissions(output)
    assert Counter(submitted_as(log, roots["slurm"]) for _, log in jobs) == planned
    assert {"finetune", "finetune_from", "evaluate_model", "group traversal"} <= set(planned)
    assert not set(planned) & local_rules()
    records = job_records()
    for job_id, log in jobs:
        assert log.exists(), log
        assert records[job_id]["JobState"] == "COMPLETED", records.get(job_id)
        assert Path(records[job_id]["WorkDir"]) == roots["slurm"]

    # the same study as a local run: identical data, bitwise identical fine-tuned and encoder
    # weights, the same probe matrix, distances, lines and fusion results
    import pandas as pd

    for dataset in config["datasets"]:
        for split in ("train", "validation", "test"):
            pd.testing.assert_frame_equal(
                *(
                    pd.read_parquet(r / f"results/data/{dataset}/{split}.parquet")
                    for r in roots.values()
                )
            )
        assert same_tensors(
            *(r / f"results/finetune/{dataset}/seed0/model.safetensors" for r in roots.values())
        )
        assert same_tensors(
            *(r / f"results/weights/{dataset}.seed0.safetensors" for r in roots.values())
        )
        metrics = [
            json.loads((r / f"results/finetune/{dataset}/seed0/metrics.json").read_text())
            for r in roots.values()
        ]
        assert metrics[0]["test"] == metrics[1]["test"]
    for name in ("pretrained", "fused.alpha.all"):
        assert same_tensors(*(r / f"results/weights/{name}.safetensors" for r in roots.values()))
    tables = {
        "probe/matrix.csv": ["model", "target_dataset", "loss", "accuracy"],
        "interpolation/lines.csv": [
            "pair",
            "alpha",
            "eval_dataset",
            "model_id",
            "loss",
            "accuracy",
        ],
        "fusion/summary.csv": ["target", "base", "mode", "seed", "accuracy", "loss"],
    }
    for table, columns in tables.items():
        slurm, here = (pd.read_csv(r / "results" / table)[columns] for r in roots.values())
        pd.testing.assert_frame_equal(slurm, here, check_exact=False, rtol=1e-6)
    distances = [pd.read_parquet(r / "results/geometry/distances.parquet") for r in roots.values()]
    pd.testing.assert_frame_equal(*distances, check_exact=False, rtol=1e-6)
    assert (roots["slurm"] / "results/summary.md").stat().st_size > 1000
    print(
        f"whole tiny study on SLURM: {len(jobs)} submissions ({dict(planned)}) "
        f"in {slurm_seconds:.0f} s"
    )


CALIBRATE = """
import json, sys, time
from weightspace.train import finetune
root, section, max_length = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
times = {}
for steps in (5, 25, 125):  # the first run pays for the lazy imports and the file cache
    settings = finetune.Settings.from_config(dict(section, epochs=steps, max_steps=steps, \
checkpoint_every=steps),
                                             seed=0, max_length=max_length)
    started = time.perf_counter()
    finetune.finetune(f"{root}/results/base", f"{root}/results/data/alpha", \
f"{root}/calibrate{sys.argv[4]}_{steps}",
                      settings, threads=section["threads"], save_model=False)
    times[steps] = time.perf_counter() - started
print((times[125] - times[25]) / 100)
"""


def seconds_per_step(root: Path, config: dict) -> float:
    """This machine's time for one step of the tiny fine-tune (two short runs after a warm-up, setup
    cancelled out), measured in two processes at once: the test runs the SLURM job and the local
    reference side by side."""
    args = [str(root), json.dumps(config["finetune"]), str(config["data"]["max_length"])]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CALIBRATE, *args, str(i)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for i in range(2)
    ]
    return max(float(proc.communicate(timeout=300)[0]) for proc in procs)


def test_finetune_killed_at_its_time_limit_resumes_on_the_retry(slurm_cluster, tmp_path):
    root, reference = tmp_path / "slurm", tmp_path / "local"
    root.mkdir()
    config = tiny_config(root, {"alpha": "sentiment"}, seeds=(0,))
    write_config(root, config)
    # only the fine-tune goes to SLURM
    snakemake(root, "--cores", "2", "results/base", "results/data/alpha/meta.json")

    # SLURM's smallest time limit is a minute and slurmctld enforces limits every 30 s: the job gets
    # SIGTERM 60-90 s after it starts. Train ~130 s at the calibrated speed: the first attempt must
    # be cut short (with ~110 s a clean-clone CI run once ended with nothing resumed, training done
    # inside attempt 1), and the second, 2 minutes with its ~15 s start, must end well inside its
    # limit (with ~150 s one finished 3 s before it, was killed while exiting, and the third attempt
    # trained from scratch: resumed_from_step None again). The rule's runtime =
    # finetune.runtime x attempt gives the retry 2 minutes, a third attempt 3. checkpoint_every =
    # all the steps: the only checkpoint to resume from is the one the SIGTERM handler writes.
    steps = int(130 / seconds_per_step(root, config))
    config["finetune"].update(epochs=steps, max_steps=steps, checkpoint_every=steps, runtime=1)
    write_config(root, config)
    shutil.copytree(root, reference, symlinks=True)
    target = "results/finetune/alpha/seed0/metrics.json"

    started = time.monotonic()
    local = locally(reference, target, cores=1)
    code, output = on_slurm(root, target).wait(timeout=540)
    slurm_seconds = time.monotonic() - started
    assert code == 0, output[-6000:]
    local_code, local_output = local.wait(timeout=300)
    assert local_code == 0, local_output[-6000:]

    # attempt n asked for n minutes; every attempt but the last hit its limit (SIGTERM), the last
    # finished
    attempts = submissions(output)
    assert len(attempts) >= 2, output[-6000:]
    records = job_records()
    states = [(records[job_id]["JobState"], records[job_id]["TimeLimit"]) for job_id, _ in attempts]
    assert states == [("TIMEOUT", str(n)) for n in range(1, len(attempts))] + [
        ("COMPLETED", str(len(attempts)))
    ]
    assert "DUE TO TIME LIMIT" in attempts[0][1].read_text()

    # it resumed from the checkpoint the SIGTERM handler wrote (the only one before the end) and
    # ended where an uninterrupted run ends, bitwise
    metrics = json.loads((root / target).read_text())
    uninterrupted = json.loads((reference / target).read_text())
    assert metrics["steps"] == uninterrupted["steps"] == steps
    assert (
        isinstance(metrics["resumed_from_step"], int) and 0 < metrics["resumed_from_step"] < steps
    )
    assert uninterrupted["resumed_from_step"] is None
    assert same_tensors(
        root / "results/finetune/alpha/seed0/model.safetensors",
        reference / "results/finetune/alpha/seed0/model.safetensors",
    )
    assert metrics["test"] == uninterrupted["test"]
    assert not (root / "results/finetune/alpha/seed0/resume").exists()
    assert not processes_under(root), "a process of the killed attempt outlived its job"
    print(
        f"time limit: {steps} steps, resumed from step {metrics['resumed_from_step']}, "
        f"{len(attempts)} attempts, {slurm_seconds:.0f} s on SLURM"
    )


def test_finetune_cancelled_with_sigterm_resumes_on_the_rerun(slurm_cluster, tmp_path):
    """scancel --signal=TERM is what a preempting or cancelling SLURM sends first: the running
    fine-tune writes a checkpoint and its job fails; running Snakemake again resumes it, ending with
    an uninterrupted run's weights."""
    root, reference = tmp_path / "slurm", tmp_path / "local"
    root.mkdir()
    config = tiny_config(root, {"alpha": "sentiment"}, seeds=(0,))
    write_config(root, config)
    # only the fine-tune goes to SLURM
    snakemake(root, "--cores", "2", "results/base", "results/data/alpha/meta.json")
    seconds = 90
    steps = int(seconds / seconds_per_step(root, config))
    config["finetune"].update(epochs=steps, max_steps=steps, checkpoint_every=steps, runtime=10)
    write_config(root, config)
    shutil.copytree(root, reference, symlinks=True)
    target = "results/finetune/alpha/seed0/metrics.json"
    log = root / "results/logs/finetune/alpha/seed0.log"

    local = locally(reference, target, cores=1)
    # this first run gives up after the cancelled attempt (no retry), as when SLURM cancels a job
    # for good
    first = on_slurm(root, target, extra=("--preemptible-retries", "0"), name="cancelled")
    deadline = time.monotonic() + 300
    while not (log.exists() and "fine-tuning alpha.seed0" in log.read_text()):
        assert first.proc.poll() is None and time.monotonic() < deadline, first.log.read_text()[
            -4000:
        ]
        time.sleep(1)
    time.sleep(0.3 * seconds)  # well into the training, well before its end
    [(job_id, _)] = submissions(first.log.read_text())
    subprocess.run(["scancel", "--signal=TERM", job_id], check=True, timeout=60)
    code, output = first.wait(timeout=300)
    assert code != 0, output[-4000:]
    saved = [int(step) for step in re.findall(r"checkpoint saved at step (\d+)", log.read_text())]
    # the SIGTERM handler's, at once
    assert len(saved) == 1 and 0 < saved[0] < steps, log.read_text()[-4000:]
    assert (root / "results/finetune/alpha/seed0/resume").is_dir()
    assert not (root / target).exists()
    assert job_records()[job_id]["JobState"] in ("FAILED", "CANCELLED"), job_records()[job_id]

    code, output = on_slurm(root, target, name="rerun").wait(timeout=480)  # the rerun: it resumes
    assert code == 0, output[-6000:]
    local_code, local_output = local.wait(timeout=300)
    assert local_code == 0, local_output[-6000:]
    metrics = json.loads((root / target).read_text())
    uninterrupted = json.loads((reference / target).read_text())
    assert metrics["resumed_from_step"] == saved[0] and uninterrupted["resumed_from_step"] is None
    assert metrics["steps"] == uninterrupted["steps"] == steps
    assert same_tensors(
        root / "results/finetune/alpha/seed0/model.safetensors",
        reference / "results/finetune/alpha/seed0/model.safetensors",
    )
    assert same_tensors(
        root / "results/weights/alpha.seed0.safetensors",
        reference / "results/weights/alpha.seed0.safetensors",
    )
    assert metrics["test"] == uninterrupted["test"]
    assert not processes_under(root), "a process of the cancelled attempt outlived its job"
    print(
        f"scancel --signal=TERM at step {saved[0]} of {steps}; "
        "the rerun resumed and matched bitwise"
    )


# A study of 10 datasets x 2 seeds in 4 tasks (the tiny config's traversal and fusion settings:
# every group of lines studied, fusion for one target). Its jobs, grouped as the SLURM profile
# groups them:
#   finetune 20, evaluate_model 23 (20 fine-tuned, the pretrained and 2 fused bases),
#   prepare_dataset 10, finetune_from 4, base_model, extract_pretrained_weights, distances:
#   one submission each                                                                    = 61
#   fuse (2): 1, evaluate_group (one per studied line, plane and region group: ~45 jobs,
#   8 a group): ~6                                                                         ~ 7
#   (66 submissions for 115 jobs, measured 2026-12-07)
#   (no L2 job: each probe chooses its own L2 inside its evaluation job)
# The bound leaves room for a rule added later; a job per (model, dataset) as before needs ~500
# submissions.
SUBMISSIONS_10x2 = 80


def test_submissions_of_a_10_dataset_2_seed_study_stay_bounded(tmp_path):
    tasks = ("sentiment", "topic", "nli", "twitter")
    names = ["alpha"] + [f"d{i}" for i in range(1, 10)]
    config = tiny_config(
        tmp_path, {name: tasks[i % len(tasks)] for i, name in enumerate(names)}, seeds=(0, 1)
    )
    write_config(tmp_path, config)
    planned = planned_submissions(tmp_path)
    jobs = planned_jobs(tmp_path)
    total = sum(planned.values())
    assert total <= SUBMISSIONS_10x2, planned
    # the short jobs share submissions, the aggregates run on the submitting host
    assert total < sum(jobs.values())
    # what grows: one submission per fine-tune, per stored model's evaluation and per dataset's
    # preparation
    assert planned["finetune"] == 20 and planned["prepare_dataset"] == 10
    assert planned["evaluate_model"] == 20 + 1 + len(config["fusion"]["scopes"])
    # the short jobs: a submission per (up to) group-components of them
    assert "probe_l2" not in jobs
    for rule, group, size in (("evaluate_group", "traversal", 8), ("fuse", "fused", 12)):
        assert rule not in planned and planned[f"group {group}"] == math.ceil(jobs[rule] / size), (
            rule,
            planned,
        )
    print(f"10 datasets x 2 seeds: {sum(jobs.values())} jobs, {total} submissions: {dict(planned)}")
