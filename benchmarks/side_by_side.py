"""Do two one-thread jobs slow each other down? The encoder pass alone, two side by side, and one on
two threads.

The 2-core default runs two one-thread jobs at a time. If they shared the CPU's cache or memory
bandwidth badly, each would encode below its one-process rate and a single two-thread job would be
the better use of the machine. This measures it on the packaged base (all-MiniLM-L6-v2), fp32,
batches of --batch x --length tokens without padding, for --seconds each:

  alone        one process, one thread (the baseline)
  side by side two such processes at once (each one's rate, and their sum)
  two threads  one process, two threads

and prints each rate and its ratio to the baseline. Names the CPU.

    .venv/bin/python benchmarks/side_by_side.py [--seconds 20] [--batch 16] [--length 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

WORKER = """
import json, sys, time
import torch
from transformers import AutoModel
threads, seconds, batch, length, folder = int(sys.argv[1]), float(sys.argv[2]), \
int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
model = AutoModel.from_pretrained(folder).eval()
ids = torch.randint(1000, 20000, (batch, length), generator=torch.Generator().manual_seed(0))
mask = torch.ones_like(ids)
with torch.inference_mode():
    for _ in range(3):  # warm-up
        model(input_ids=ids, attention_mask=mask)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model(input_ids=ids, attention_mask=mask)
        n += batch
    print(json.dumps({"examples_per_second": n / (time.perf_counter() - start)}))
"""


def launch(threads: int, args, folder: str) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER,
            str(threads),
            str(args.seconds),
            str(args.batch),
            str(args.length),
            folder,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def rate(process: subprocess.Popen) -> float:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"a worker failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])["examples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=40)
    args = parser.parse_args()

    from weightspace import hardware
    from weightspace.model import base_model

    folder = base_model.resolve_source({"builtin": "all-MiniLM-L6-v2"})
    alone = rate(launch(1, args, folder))
    pair = [launch(1, args, folder), launch(1, args, folder)]
    side = [rate(p) for p in pair]
    two = rate(launch(2, args, folder))
    print(
        f"CPU: {hardware.cpu_name()}; {os.cpu_count()} CPUs; fp32; "
        f"batch {args.batch} x {args.length} tokens; {args.seconds:.0f} s each"
    )
    print(f"alone (1 thread):        {alone:6.1f} examples/s   1.00x")
    for i, r in enumerate(side):
        print(f"side by side, job {i + 1}:   {r:6.1f} examples/s   {r / alone:.2f}x")
    print(f"side by side, both:      {sum(side):6.1f} examples/s   {sum(side) / alone:.2f}x")
    print(f"one job on 2 threads:    {two:6.1f} examples/s   {two / alone:.2f}x")


if __name__ == "__main__":
    main()
