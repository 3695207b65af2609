"""Leave-source-out on timelines (benchmarks/robustness.py calls it): each fold's network labels timelines of random
3-30 s pieces of its own held-out corpus music/speech clips, sources it never trained on (GTZAN, one source, is left
out: the conditions measure it), end to end as an archive holds them, with the label job and --label-args; segment
P/R/F1 on a 10 ms grid per fold and over all folds. The timelines are written once under WORK/lso-timelines (the
same for every labeling setting), the labels under WORK/labels-NAME/lso-fold-K.

On its own, a labeling setting measured on the folds a robustness run trained (no training, no conditions):

    .venv/bin/python benchmarks/lso_timelines.py --work /tmp/rb --label-args "--class-prior noise=0.6" --name N
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import combined, grid_eval, random_timeline, run_job, write_results  # noqa: E402
from pipelines import storage  # noqa: E402

SR = 22050


def fold_timelines(run: str, k: int, root: str, n: int, minutes: float) -> dict:
    """{timeline path: truth [(start, end, label)]} of fold k, written on the first call."""
    done = os.path.join(root, "done.json")
    if os.path.exists(done):
        return storage.read_json(done)
    from pipelines.demo import wav_bytes

    test = storage.read_json(os.path.join(run, f"fold-{k}", "splits.json"))["test"]
    test = [u for u in test if f"{os.sep}corpus{os.sep}" in u and any(f"{os.sep}{c}{os.sep}" in u for c in ("music", "speech"))]
    clips = [(storage.decode(u, SR)[0], "music" if f"{os.sep}music{os.sep}" in u else "speech") for u in test]
    rng, truth = np.random.default_rng(k), {}
    for i in range(n):
        x, t = random_timeline(clips, minutes * 60, rng)
        path = os.path.join(root, "in", f"tl-{i}.wav")
        storage.write_bytes(path, wav_bytes(x, SR))
        truth[path] = t
    storage.write_json(done, truth)
    return truth


def lso_timelines(a, n: int = 2, minutes: float = 5.0) -> dict:
    """-> {"per_fold": [segment P/R/F1 of each fold], "all": over all folds' timelines, "timelines_per_fold", "minutes"}."""
    run = os.path.join(a.work, "runs", "lso")
    labels = os.path.join(a.work, "labels" + (f"-{a.name}" if a.name != "robustness" else ""))
    per_fold, T, P, off = [], [], [], 0.0
    for k in range(a.lso_folds):
        root = os.path.join(a.work, "lso-timelines", f"fold-{k}")
        truth = fold_timelines(run, k, root, n, minutes)
        out = os.path.join(labels, f"lso-fold-{k}")
        if not os.path.exists(os.path.join(out, "_SUCCESS.json")):
            run_job("label", ["--input", os.path.join(root, "in"), "--model", os.path.join(run, f"fold-{k}", "model.pt"),
                              "--output", out, "--overwrite", *a.label_args.split(), *ensemble_args(a, k)])
        segs = storage.read_table(os.path.join(out, "segments.parquet")).to_pylist()
        tr, pr = combined(truth, lambda p: [(s["start"], s["end"], s["label"]) for s in segs if s["uri"] == p])
        per_fold.append(grid_eval(pr, tr))
        T += [(s + off, e + off, c) for s, e, c in tr]
        P += [(s + off, e + off, c) for s, e, c in pr]
        off += tr[-1][1] + 1.0
        print(f"leave-source-out timelines, fold {k}: {per_fold[-1]}", flush=True)
    return {"per_fold": per_fold, "all": grid_eval(P, T), "timelines_per_fold": n, "minutes": minutes}


def ensemble_args(a, k: int) -> list[str]:
    """`--ensemble` of fold k's networks of the runs under a.ensemble_works (comma-separated --work folders of
    robustness runs on the same folds: fold k's test files checked equal), or []."""
    works = [w for w in (getattr(a, "ensemble_works", "") or "").split(",") if w]
    if not works:
        return []
    mine = storage.read_json(os.path.join(a.work, "runs", "lso", f"fold-{k}", "splits.json"))["test"]
    for w in works:
        if storage.read_json(os.path.join(w, "runs", "lso", f"fold-{k}", "splits.json"))["test"] != mine:
            raise SystemExit(f"--ensemble-works {w}: fold {k} holds other test files than {a.work}'s")
    return ["--ensemble", ",".join(os.path.join(w, "runs", "lso", f"fold-{k}", "model.pt") for w in works)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Each leave-source-out fold's network labels timelines of its held-out "
                                            "sources (the folds of a benchmarks/robustness.py run); writes "
                                            "benchmarks/results/NAME.json")
    p.add_argument("--work", required=True, help="the robustness run's --work (WORK/runs/lso holds its folds)")
    p.add_argument("--lso-folds", type=int, default=3, help="folds of that run")
    p.add_argument("--label-args", default="", help="pipelines/label.py flags (quoted)")
    p.add_argument("--name", required=True, help="results file (and WORK/labels-NAME)")
    p.add_argument("--ensemble-works", default="", help="comma-separated --work folders of runs on the same folds: "
                   "each fold labels with theirs too (label --ensemble)")
    a = p.parse_args(argv)
    a.work = os.path.abspath(a.work)
    if not os.path.exists(os.path.join(a.work, "runs", "lso", "cv.json")):
        p.error(f"--work {a.work}: no finished leave-source-out run (runs/lso/cv.json); run benchmarks/robustness.py "
                "--lso-folds K first")
    lt = lso_timelines(a)
    path = write_results(a.name, {"leave_source_out_timelines": lt, "label_args": a.label_args.split(),
                                  "ensemble_args": [ensemble_args(a, k) for k in range(a.lso_folds)],
                                  "models": [os.path.join(a.work, "runs", "lso", f"fold-{k}", "model.pt")
                                             for k in range(a.lso_folds)]})
    print(f"lso_timelines: done: music F1 {lt['all']['music']['f1']:.3f}, speech F1 {lt['all']['speech']['f1']:.3f} "
          f"over {a.lso_folds} folds; figures in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
