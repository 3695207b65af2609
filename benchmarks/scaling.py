"""Throughput of each stage with 1 and with 2 worker processes on this machine, on the real data set:

    .venv/bin/python benchmarks/scaling.py                  # featurize, train, label; ~15 min on 2 cores
    .venv/bin/python benchmarks/scaling.py --stages label --model /path/model.pt

Each run is a fresh `python pipelines/<job>.py` process with its own local Ray (what a user runs), so the
figures include Ray's start-up, scheduling and Parquet writing; the same machine, data and flags except the
number of worker processes, one run after the other, every worker process with ONE torch thread, so that
"2 / 1" is what a second core buys (the figure the cluster sizing multiplies by cores):

  featurize  clips/s from the job's summary, on a local Ray given 1 CPU, then 2 CPUs (featurize tasks are
             single-threaded by design and take 1 CPU each; read -> featurize -> write fuse into one task
             per --files-per-task files, so 1 CPU runs one such task at a time, 2 CPUs two). The data set
             is listed --repeat times over (the job's own benchmarking flag) to make the run long enough.
  train      training crops/s (forward + backward + all-reduce + AdamW over 3 s crops, the job's own
             per-epoch figure, averaged over the epochs after the first) for `--num-workers 1` and
             `--num-workers 2` (gloo all-reduce between them), `--threads-per-worker 1`.
  label      audio seconds per wall second (x realtime) from the job's summary for `--actors 1` and
             `--actors 2` network actors, `--threads-per-actor 1`; the decode/featurize tasks (0.5 CPU
             each) take the CPUs the actors leave (0.5 each here): 3 at once beside 1 actor, 2 beside 2.

Train and label run on a local Ray with all of this machine's CPUs. Train uses the data set featurized once
(no repeat); label uses --model, else the model of the 2-worker train run (speed does not depend on the
weights). The load average before each run is printed: other work on the machine makes the second core
partly busy, so compare figures from one run only. Everything is written under --work (replaced on each
run), never into the repository; the figures go to benchmarks/results/scaling.json with the commit, machine
and command (scaling-<stages>.json for a run of some stages only).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks.common import write_results  # noqa: E402


# a job on a local Ray of a given size: the jobs start Ray only when it is not running yet
WRAP = ("import sys, ray; ray.init(num_cpus=int(sys.argv[1]), include_dashboard=False); "
        "from pipelines import {mod}; sys.exit({mod}.main(sys.argv[2:]))")


def job(script: str, args: list[str], ray_cpus: int | None = None) -> str:
    """Run pipelines/<script> with args (on a local Ray of ray_cpus CPUs when given, else all CPUs);
    -> its output. Exits with its output on failure."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    env.setdefault("RAY_AUTH_MODE", "disabled")
    if ray_cpus is None:
        cmd = [sys.executable, os.path.join(REPO, "pipelines", script), *args]
    else:
        cmd = [sys.executable, "-c", WRAP.format(mod=script.removesuffix(".py")), str(ray_cpus), *args]
    p = subprocess.run(cmd, check=False, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if p.returncode:
        sys.exit(f"scaling: {script} {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}")
    return p.stdout


def summary(out: str, pattern: str) -> re.Match:
    m = re.search(pattern, out)
    if not m:
        sys.exit(f"scaling: no summary line matching {pattern!r} in:\n{out[-3000:]}")
    return m


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "music_speech"),
                   help="the real data set (128 WAVs of 30 s)")
    p.add_argument("--work", default="/tmp/music-speech-scaling", help="outputs go here (replaced on each run)")
    p.add_argument("--stages", default="featurize,train,label", help="comma-separated subset")
    p.add_argument("--repeat", type=int, default=8, help="featurize: list the data set N times over (1024 windows)")
    p.add_argument("--epochs", type=int, default=3, help="train: epochs per run (the first is not averaged)")
    p.add_argument("--model", help="label: checkpoint to use (default: the 2-worker train run's model.pt)")
    a = p.parse_args(argv)
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    bad = set(stages) - {"featurize", "train", "label"}
    if bad:
        p.error(f"unknown stage(s): {', '.join(sorted(bad))}")
    if not os.path.isdir(a.data):
        print(f"scaling: error: {a.data} does not exist", file=sys.stderr)
        return 2
    work = os.path.abspath(a.work)
    if a.model and os.path.abspath(a.model).startswith(work + os.sep):
        p.error(f"--model {a.model} lies inside --work {a.work}, which is replaced on each run: copy it out first")
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    feats = os.path.join(work, "features")
    model = a.model
    rows = []  # (stage, unit, rate with 1 worker, rate with 2 workers)
    loads = {}  # "<stage> <n>": the 1-minute load average before that run

    def load(key=None):
        if key:
            loads[key] = os.getloadavg()[0]
        return f"load avg {os.getloadavg()[0]:.2f}"

    if "featurize" in stages:
        rate = {}
        for n in (1, 2):
            print(f"featurize, Ray with {n} CPU(s), {load(f'featurize {n}')} ...", flush=True)
            out = job("featurize.py", ["--input", a.data, "--output", os.path.join(work, f"features-x{n}"),
                                          "--repeat", str(a.repeat), "--num-cpus", "1"], ray_cpus=n)
            m = summary(out, r"featurize: done: (\d+) files, (\d+) windows.* ([\d.]+) clips/s")
            rate[n] = float(m[3])
            print(f"  {m[0]}", flush=True)
        rows.append(("featurize", f"clips/s ({int(m[2])} windows)", rate[1], rate[2]))

    if "train" in stages or ("label" in stages and not model):
        if not os.path.exists(os.path.join(feats, "_SUCCESS.json")):
            job("featurize.py", ["--input", a.data, "--output", feats])
        rate = {}
        for n in (1, 2) if "train" in stages else (2,):
            print(f"train, {n} worker(s), {load(f'train {n}')} ...", flush=True)
            name = f"workers-{n}"
            job("train.py", ["--features", feats, "--output", os.path.join(work, "runs"), "--name", name,
                             "--num-workers", str(n), "--threads-per-worker", "1",
                             "--epochs", str(a.epochs), "--min-epochs", str(a.epochs)])
            with open(os.path.join(work, "runs", name, "report", "metrics.json")) as f:
                m = json.load(f)
            hist = m["history"][1:] or m["history"]
            rate[n] = float(np.mean([h["train_samples_per_s"] for h in hist]))
            print(f"  {rate[n]:.2f} crops/s ({m['train_config']['crop_frames']} frames), "
                  f"peak {m['peak_memory_mb_per_worker']:.0f} MB per worker", flush=True)
        model = model or os.path.join(work, "runs", "workers-2", "model.pt")
        if "train" in stages:
            rows.append(("train", f"crops/s ({m['train_config']['crop_frames']}-frame crops)", rate[1], rate[2]))

    if "label" in stages:
        rate = {}
        for n in (1, 2):
            print(f"label, {n} actor(s), {load(f'label {n}')} ...", flush=True)
            out = job("label.py", ["--input", a.data, "--model", model, "--output",
                                      os.path.join(work, f"labels-{n}"), "--actors", str(n),
                                      "--threads-per-actor", "1", "--cpus-per-actor", "0.5"])
            m = summary(out, r"label: done: (\d+) files, ([\d.]+) h of audio.* ([\d.]+)x realtime")
            rate[n] = float(m[3])
            print(f"  {m[0]}", flush=True)
        rows.append(("label", f"x realtime ({m[1]} files, {m[2]} h)", rate[1], rate[2]))

    print(f"\n{os.cpu_count()} cores; {load()} at the end\n")
    print("| stage | unit | 1 worker process | 2 worker processes | 2 / 1 |\n| --- | --- | --- | --- | --- |")
    for stage, unit, r1, r2 in rows:
        print(f"| {stage} | {unit} | {r1:.2f} | {r2:.2f} | {r2 / r1:.2f} |")
    print(f"\ncommand: .venv/bin/python benchmarks/scaling.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    # a run of some stages only gets a file of its own: the README's table is one run of all three
    name = "scaling" if set(stages) == {"featurize", "train", "label"} else "scaling-" + "-".join(stages)
    path = write_results(name, {
        "data": os.path.normpath(a.data), "repeat": a.repeat, "epochs": a.epochs, "load_before": loads,
        "stages": {stage: {"unit": unit, "one": r1, "two": r2, "two_over_one": r2 / r1} for stage, unit, r1, r2 in rows}})
    print(f"figures in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
