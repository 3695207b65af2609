"""What `label --ensemble` buys on sources never trained on: the leave-source-out folds of several robustness runs
(the same features and folds, other networks), each window's probabilities averaged over the runs, as the label
job averages its members' before the prior (pipelines/scoring.py). No training and no audio labeled: each
fold's report/predictions.json of each run (whole 30 s windows, as the folds' own figures), counted as
benchmarks/lso.py counts one run (clip accuracy over the corpus's music/speech clips, noise recall, GTZAN as an
unseen source, per source, at noise weights 1 to 0.4):

    .venv/bin/python benchmarks/lso_ensemble.py --works /work/rb12,/work/rb18 --name lso-ensemble

Every run must hold the same folds (the same test windows per fold, checked).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import REPO, write_results  # noqa: E402
from benchmarks.lso import all_counts  # noqa: E402
from pipelines import storage  # noqa: E402


def averaged(works: list[str], fold: int) -> tuple[list[str], list[dict]]:
    """Fold `fold`'s test windows with each one's probabilities averaged over the runs under `works`."""
    preds = [storage.read_json(os.path.join(w, "runs", "lso", f"fold-{fold}", "report", "predictions.json"))
             for w in works]
    keys = [sorted((x["uri"], x["window_start"]) for x in p["windows"]) for p in preds]
    if any(k != keys[0] for k in keys) or any(p["classes"] != preds[0]["classes"] for p in preds):
        raise SystemExit(f"fold {fold}: the runs {works} hold other test windows or classes; not the same folds")
    by_key = [{(x["uri"], x["window_start"]): x for x in p["windows"]} for p in preds]
    out = [{**by_key[0][k], "probs": list(np.mean([b[k]["probs"] for b in by_key], axis=0))} for k in keys[0]]
    return preds[0]["classes"], out


def main(argv=None) -> int:
    shared = os.path.join(os.path.dirname(REPO), "shared", "data")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--works", required=True, help="comma-separated robustness --work folders (their runs/lso)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--data", default=os.path.join(shared, "music_speech"), help="the seed's {train,test}/{music,speech}")
    p.add_argument("--corpus", default=os.path.join(shared, "corpus"), help="the corpus with manifest.csv")
    p.add_argument("--name", default="lso-ensemble", help="results file benchmarks/results/NAME.json")
    a = p.parse_args(argv)
    works = [w for w in a.works.split(",") if w]
    for w in works:
        if not os.path.exists(os.path.join(w, "runs", "lso", "cv.json")):
            raise SystemExit(f"{w}: no finished leave-source-out run (runs/lso/cv.json)")
    windows, folds, classes = [], [], None
    for k in range(a.folds):
        classes, got = averaged(works, k)
        folds.append(float(np.mean([classes[int(np.argmax(x["probs"]))] == x["label"] for x in got])))
        windows += got
    lso = {"folds": a.folds, "fold_accuracies": folds, **all_counts(a, windows, classes)}
    path = write_results(a.name, {"works": works, "leave_source_out": lso})
    for w in ("1.0", "0.6"):
        d = lso["noise_weight_sweep"][w]
        print(f"noise weight {w}: corpus music/speech {d['corpus_music_speech_accuracy']:.1%}, noise recall "
              f"{d['noise_recall']:.1%}, GTZAN unseen {d['gtzan_unseen_accuracy']:.1%}")
    print(f"per fold {' / '.join(f'{x:.1%}' for x in folds)}; figures in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
