"""Training throughput of train's two ingest paths on the same features: in memory (each worker loads its
windows once) against streamed (each epoch reads them through Ray Data and cuts crops as it goes).

    .venv/bin/python benchmarks/ingest.py                            # the real set, featurized into --work
    .venv/bin/python benchmarks/ingest.py --features FEATURES        # features already written
    .venv/bin/python benchmarks/ingest.py --demo 8 --epochs 2 -- --crop-seconds 2   # a small check

Each run is `python pipelines/train.py` in its own process tree with its own local Ray (what a user runs),
the same flags but `--ingest memory` / `--ingest stream`, so both take the same steps of the same crops per
epoch. Training crops/s is the job's own per-epoch figure (forward + backward + all-reduce + AdamW, and on
the stream path the waits for data), averaged over the epochs after the first (the warm-up epoch is left
out); the table also gives the up-front load of the in-memory path, the workers' peak memory, the whole
process tree's peak and the test accuracy. --rounds R alternates the two paths R times (other work on the
machine drifts). Figures go to benchmarks/results/<--name>.json with the commit, machine and command.
Extra arguments after `--` go to pipelines/train.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.common import run_job, write_results  # noqa: E402

PATHS = ("memory", "stream")


def features(a, work: str) -> str:
    """--features, else featurize --data (or generated demo audio with --demo N per class) into work."""
    if a.features:
        return a.features
    out = os.path.join(work, "features")
    if a.demo:
        from pipelines.demo import write_demo

        src = os.path.join(work, "audio")
        write_demo(src, per_class=a.demo, seconds=a.demo_seconds, seed=0)
    else:
        src = a.data
        if not os.path.isdir(src):
            sys.exit(f"ingest: error: {src} does not exist (give --features, --data or --demo N)")
    args = ["--input", src, "--output", out, "--repeat", str(a.repeat)]
    if a.window_seconds:
        args += ["--window-seconds", str(a.window_seconds)]
    run_job("featurize", args)
    return out


def one_run(a, feats: str, work: str, path: str, k: int, extra: list[str]) -> dict:
    name = f"{path}-{k}"
    _, res = run_job("train", ["--features", feats, "--output", os.path.join(work, "runs"), "--name", name,
                               "--ingest", path, "--epochs", str(a.epochs), "--min-epochs", str(a.epochs),
                               "--patience", str(a.epochs), "--seed", "0", *extra])
    with open(os.path.join(work, "runs", name, "report", "metrics.json")) as f:
        m = json.load(f)
    after = m["history"][1:] or m["history"]
    return {"ingest": m["ingest"], "crops_per_s": float(np.mean([h["train_samples_per_s"] for h in after])),
            "train_seconds_per_epoch": float(np.mean([h["train_seconds"] for h in after])),
            "epochs_averaged": len(after), "steps_per_epoch": m["train_config"]["steps_per_epoch"],
            "batch_size": m["train_config"]["batch_size"], "crop_frames": m["train_config"]["crop_frames"],
            "windows": m["train_config"]["windows"], "shuffle_buffer": m["train_config"]["shuffle_buffer"],
            "data_load_seconds": m["data_load_seconds"], "peak_memory_mb_per_worker": m["peak_memory_mb_per_worker"],
            "worker_data_mb_estimate": m["worker_data_mb_estimate"], "test_accuracy": m["test"]["accuracy"],
            "wall_seconds": res["wall_s"], "peak_tree_mib": res["peak_tree_mib"]}


def summarize(runs: list[dict]) -> dict:
    out = {}
    for path in PATHS:
        rs = [r for r in runs if r["ingest"] == path]
        out[path] = {k: float(np.mean([r[k] for r in rs])) for k in
                     ("crops_per_s", "train_seconds_per_epoch", "data_load_seconds", "peak_memory_mb_per_worker",
                      "peak_tree_mib", "test_accuracy", "wall_seconds")}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", help="a finished featurize output to train on (else featurize --data / --demo)")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "music_speech"),
                   help="audio to featurize when no --features (default: the real set)")
    p.add_argument("--demo", type=int, default=0, help="featurize N generated clips per class instead of --data")
    p.add_argument("--demo-seconds", type=float, default=8.0, help="--demo clip length")
    p.add_argument("--window-seconds", type=float, help="featurize --window-seconds (default: the job's 30 s)")
    p.add_argument("--repeat", type=int, default=1, help="featurize --repeat: list the audio N times over")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is left out of the rate")
    p.add_argument("--rounds", type=int, default=1, help="memory and stream runs, alternated, this many times")
    p.add_argument("--work", default="/tmp/music-speech-ingest", help="outputs go here (replaced on each run)")
    p.add_argument("--name", default="ingest", help="results file: benchmarks/results/NAME.json")
    a, extra = p.parse_known_args(argv)
    extra = [x for x in extra if x != "--"]
    if a.epochs < 2:
        p.error("--epochs must be >= 2 (the first epoch is the warm-up)")
    work = os.path.abspath(a.work)
    if a.features and os.path.abspath(a.features).startswith(work + os.sep):
        p.error(f"--features {a.features} lies inside --work {a.work}, which is replaced on each run")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    feats = features(a, work)
    runs = []
    for k in range(a.rounds):
        for path in PATHS:
            print(f"ingest: round {k}, {path}, load avg {os.getloadavg()[0]:.2f} ...", flush=True)
            runs.append(one_run(a, feats, work, path, k, extra))
            print(f"  {runs[-1]['crops_per_s']:.2f} crops/s", flush=True)
    if len({(r["steps_per_epoch"], r["batch_size"], r["crop_frames"]) for r in runs}) != 1:
        sys.exit(f"ingest: the runs took different steps: {runs}")
    s = summarize(runs)
    r0 = runs[0]
    print(f"\n{r0['windows']['train']} training windows, {r0['steps_per_epoch']} steps/epoch of {r0['batch_size']} "
          f"crops of {r0['crop_frames']} frames; epochs 2-{a.epochs} averaged; {os.cpu_count()} cores\n")
    print("| ingest | training crops/s | train s/epoch | up-front load s | peak MiB per worker | peak MiB, process tree "
          "| test accuracy |\n| --- | --- | --- | --- | --- | --- | --- |")
    for path in PATHS:
        x = s[path]
        print(f"| {path} | {x['crops_per_s']:.2f} | {x['train_seconds_per_epoch']:.1f} | {x['data_load_seconds']:.1f} "
              f"| {x['peak_memory_mb_per_worker']:.0f} | {x['peak_tree_mib']:.0f} | {x['test_accuracy']:.4f} |")
    print(f"\nstream / memory crops/s: {s['stream']['crops_per_s'] / s['memory']['crops_per_s']:.2f}")
    path = write_results(a.name, {"summary": s, "runs": runs, "train_args": extra, "epochs": a.epochs,
                                  "rounds": a.rounds, "features": feats if a.features else None,
                                  "demo_per_class": a.demo or None, "repeat": a.repeat})
    print(f"results: {os.path.relpath(path, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
