"""Leave-source-out on the corpus (benchmarks/robustness.py calls it): pipelines/train.py --folds K --group-by source
on the robustness run's features; each fold's test files come from sources it never trained on. Clip accuracy over
the corpus's music/speech clips, noise recall, GTZAN (one source) as an unseen source.

The folds' figures are the network's: one 30 s window per clip, its most probable class. The label job also
marks stretches quieter than its `--silence-db` as `silence` before the network is asked (model/segments.py);
`noise_recall_with_silence` counts a noise clip the label job would call `silence` (quiet over at least half of
it at the job's defaults) as right, as an archive's user would: the corpus's noise includes recorded silence.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os

import numpy as np

from benchmarks.common import done_line, run_job
from model.segments import LevelTracker
from pipelines import storage
from pipelines.label_config import LabelConfig

# each leave-source-out fold is a whole training run: a shorter schedule, so that K of them fit
# (3 epochs of 0.5 crops per window: the main run's validation accuracy was 0.929 after its third such epoch)
DEFAULT_LSO = ["--classes", "music,speech,noise", "--epochs", "3", "--min-epochs", "3", "--patience", "1",
               "--crops-per-window", "0.5", "--val-fraction", "0.1"]
SR = 22050


def leave_source_out(a) -> dict:
    """Train (once) and count the K folds by source of a robustness run (a.work, a.lso_folds, a.lso_args, a.data)."""
    feats, run = os.path.join(a.work, "features"), os.path.join(a.work, "runs", "lso")
    if not os.path.exists(os.path.join(run, "cv.json")):
        out, m = run_job("train", ["--features", feats, "--output", os.path.join(a.work, "runs"), "--name", "lso",
                                   "--folds", str(a.lso_folds), "--group-by", "source",
                                   *(a.lso_args.split() if a.lso_args else DEFAULT_LSO)], os.path.join(a.work, "lso.log"))
        print(done_line(out, "train"), flush=True)
    cv = storage.read_json(os.path.join(run, "cv.json"))
    windows, classes = [], None
    for k in range(a.lso_folds):
        pred = storage.read_json(os.path.join(run, f"fold-{k}", "report", "predictions.json"))
        classes, windows = pred["classes"], windows + pred["windows"]
    return {"folds": a.lso_folds, "wall_s": cv["wall_seconds"], "confusion_matrix": cv["confusion_matrix"],
            "classes": cv["classes"], "fold_accuracies": cv["fold_accuracies"], **all_counts(a, windows, classes)}


def all_counts(a, windows: list[dict], classes: list[str]) -> dict:
    """lso_counts of the folds' windows at noise weight 1, the noise clips the label job would call `silence`,
    and (with a noise class) what `label --class-prior noise=W` would do to sources never trained on."""
    quiet = {w["uri"] for w in windows if w["label"] == "noise" and mostly_silent(w["uri"])}
    out = {**lso_counts(a, windows, classes, 1.0, quiet), "noise_clips_silent": len(quiet)}
    if "noise" in classes:
        out["noise_weight_sweep"] = {str(w): lso_counts(a, windows, classes, w, quiet) for w in (1.0, 0.8, 0.6, 0.5, 0.4)}
    return out


def mostly_silent(uri: str) -> bool:
    """Whether the label job, at its default --silence-db and --silence-min-seconds, finds `silence` over at least
    half of the file."""
    default = {f.name: f.default for f in dataclasses.fields(LabelConfig)}
    x = storage.decode(uri, SR)[0]
    lt = LevelTracker(SR, default["silence_db"], default["silence_min_seconds"])
    lt.feed(x)
    return sum(e - s for s, e in lt.intervals()) >= 0.5 * len(x) / SR


def lso_counts(a, windows: list[dict], classes: list[str], noise_weight: float = 1.0, quiet: set = frozenset()) -> dict:
    """Clip accuracy over the corpus's music/speech clips, noise recall (also with the noise clips in `quiet` right
    as `silence`), GTZAN (one source) as unseen, and what each source's clips were called; the noise probability
    times noise_weight before the argmax, as --class-prior noise=W does."""
    w8 = np.array([noise_weight if c == "noise" else 1.0 for c in classes])
    source = sources(a.corpus)
    per_source: dict = {}
    n = {"corpus_ms": 0, "corpus_ms_ok": 0, "noise": 0, "noise_ok": 0, "gtzan": 0, "gtzan_ok": 0, "noise_sil_ok": 0}
    for w in windows:
        guess = classes[int(np.argmax(np.asarray(w["probs"]) * w8))]
        key = "gtzan" if w["uri"].startswith(os.path.abspath(a.data)) else ("noise" if w["label"] == "noise" else "corpus_ms")
        n[key] += 1
        n[key + "_ok"] += guess == w["label"]
        n["noise_sil_ok"] += key == "noise" and (guess == "noise" or w["uri"] in quiet)
        got = per_source.setdefault(f"{source.get(w['uri'], 'GTZAN')} ({w['label']})", {})
        got[guess] = got.get(guess, 0) + 1
    return {"corpus_music_speech_accuracy": n["corpus_ms_ok"] / max(n["corpus_ms"], 1), "corpus_music_speech_clips": n["corpus_ms"],
            "noise_recall": n["noise_ok"] / max(n["noise"], 1), "noise_clips": n["noise"],
            "noise_recall_with_silence": n["noise_sil_ok"] / max(n["noise"], 1),
            "gtzan_unseen_accuracy": n["gtzan_ok"] / max(n["gtzan"], 1), "gtzan_clips": n["gtzan"],
            "per_source": per_source}


@functools.lru_cache(maxsize=4)
def sources(corpus: str) -> dict:
    """{absolute path of a corpus clip: its manifest source}."""
    with open(os.path.join(corpus, "manifest.csv"), newline="") as f:
        return {os.path.join(corpus, r["path"]): r["source"] for r in csv.DictReader(f)}
