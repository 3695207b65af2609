"""The peer (inaSpeechSegmenter) on the leave-source-out clips, beside our folds' calls on the same clips.

Every corpus clip and every GTZAN clip is a source ina never trained on, as each is for the fold of ours that held
it out (benchmarks/lso.py). ina runs in its own venv (benchmarks/PEER.md) over the clips as they are (16 kHz Ogg
Vorbis, GTZAN's 22.05 kHz WAV: decoded and resampled to 16 kHz WAV by peer_ina.py), every corpus clip. A clip's call is the class ina
gives the most seconds among speech, music and noise; `silence` when it gives none of them (only noEnergy), which
counts as right for noise in `noise_recall_with_silence`, as our label job's `silence` does there. Scored over the
same clips as the leave-source-out figures (the corpus minus the noise condition's held-out sources, plus GTZAN)
and per source, beside our calls from a robustness results file (at noise weight 1 and at the recipe's):

    .venv/bin/python benchmarks/peer_corpus.py --work /tmp/peer-corpus --lso-results robustness-ema-lso
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS, write_results  # noqa: E402
from benchmarks.peer import INA_PYTHON, run_ina  # noqa: E402

CLASSES = ("music", "speech", "noise")


def clip_call(segments: list) -> str:
    """ina's segments [[label, start, end], ...] -> the class with the most seconds, or 'silence'."""
    secs = {c: 0.0 for c in CLASSES}
    for lab, a, b in segments:
        if lab in secs:
            secs[lab] += b - a
    best = max(CLASSES, key=lambda c: secs[c])
    return best if secs[best] > 0 else "silence"


def clips(corpus: str, data: str) -> list[tuple[str, str, str]]:
    """(path, label, source) of every corpus clip and every GTZAN clip."""
    with open(os.path.join(corpus, "manifest.csv"), newline="") as f:
        out = [(os.path.join(corpus, r["path"]), r["label"], r["source"]) for r in csv.DictReader(f)]
    for label in ("music", "speech"):
        out += [(p, label, "GTZAN") for p in sorted(glob.glob(os.path.join(data, "*", label, "*.wav")))]
    return out


def score(rows: list[tuple[str, str, str]], calls: dict, held: set) -> dict:
    """The leave-source-out figures (benchmarks/lso.py's lso_counts) of calls {path: class} over rows, the `held`
    sources (the noise condition's, never in a fold) left out of the totals and kept per source."""
    n = {"ms": 0, "ms_ok": 0, "noise": 0, "noise_ok": 0, "noise_sil_ok": 0, "gtzan": 0, "gtzan_ok": 0}
    per_source: dict = {}
    for path, label, source in rows:
        got = calls[path]
        tally = per_source.setdefault(f"{source} ({label})", {})
        tally[got] = tally.get(got, 0) + 1
        if source in held:
            continue
        key = "gtzan" if source == "GTZAN" else ("noise" if label == "noise" else "ms")
        n[key] += 1
        n[key + "_ok"] += got == label
        n["noise_sil_ok"] += key == "noise" and got in ("noise", "silence")
    return {"corpus_music_speech_accuracy": n["ms_ok"] / max(n["ms"], 1), "corpus_music_speech_clips": n["ms"],
            "noise_recall": n["noise_ok"] / max(n["noise"], 1), "noise_clips": n["noise"],
            "noise_recall_with_silence": n["noise_sil_ok"] / max(n["noise"], 1),
            "gtzan_unseen_accuracy": n["gtzan_ok"] / max(n["gtzan"], 1), "gtzan_clips": n["gtzan"],
            "per_source": per_source}


def ours(results: str, weights: list[str]) -> dict:
    """Our folds' figures from a robustness results file: {noise weight: lso figures} at those of `weights` it has."""
    with open(os.path.join(RESULTS, f"{results}.json")) as f:
        lso = json.load(f)["leave_source_out"]
    every = {"1.0": {k: v for k, v in lso.items() if k != "noise_weight_sweep"}, **lso.get("noise_weight_sweep", {})}
    return {w: every[w] for w in weights if w in every}


def table(ina: dict, mine: dict) -> str:
    """Per source: clips, ina's share right, ours (each results file at each noise weight); then the totals.
    mine: {results name: {noise weight: lso figures}}."""
    right = lambda tally, key: tally.get(key.rsplit("(", 1)[1][:-1], 0) / max(sum(tally.values()), 1)  # noqa: E731
    cols = [(n, w, f) for n, by_w in mine.items() for w, f in by_w.items()]
    lines = [f"ours: {', '.join(f'({i + 1}) {n} at noise weight {w}' for i, (n, w, _) in enumerate(cols))}",
             f"{'source (label)':46s} {'clips':>5s} {'ina':>6s} " + " ".join(f"{f'({i + 1})':>7s}" for i in range(len(cols)))]
    for key, tally in sorted(ina["per_source"].items()):
        our = [f.get("per_source", {}).get(key) for _, _, f in cols]
        lines.append(f"{key:46s} {sum(tally.values()):5d} {right(tally, key):6.1%} "
                     + " ".join(f"{right(t, key):7.1%}" if t else f"{'-':>7s}" for t in our))
    for k in ("corpus_music_speech_accuracy", "noise_recall", "noise_recall_with_silence", "gtzan_unseen_accuracy"):
        lines.append(f"{k:46s} {'':5s} {ina[k]:6.1%} " + " ".join(f"{f.get(k, float('nan')):7.1%}" for _, _, f in cols))
    return "\n".join(lines)


def main(argv=None) -> int:
    shared = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="folder for ina's output (a finished one is reused)")
    p.add_argument("--corpus", default=os.path.join(shared, "corpus"), help="the corpus with manifest.csv")
    p.add_argument("--data", default=os.path.join(shared, "music_speech"), help="GTZAN: {train,test}/{music,speech}")
    p.add_argument("--lso-results", default="robustness-ema-lso",
                   help="robustness results files (benchmarks/results/NAME.json, comma-separated) whose leave-source-out "
                        "calls to show; the first one's held-out noise sources are left out of the totals")
    p.add_argument("--weights", default="1.0,0.6", help="our noise weights to show (from that file's sweep)")
    p.add_argument("--ina-python", default=INA_PYTHON, help="inaSpeechSegmenter's venv python")
    p.add_argument("--name", default="peer-corpus", help="results file benchmarks/results/NAME.json")
    a = p.parse_args(argv)
    if not os.path.exists(os.path.join(a.corpus, "manifest.csv")):
        p.error(f"--corpus {a.corpus}: no manifest.csv")
    names, weights = a.lso_results.split(","), a.weights.split(",")
    for n in names:
        if not os.path.exists(os.path.join(RESULTS, f"{n}.json")):
            p.error(f"--lso-results {n}: no {os.path.join(RESULTS, n)}.json")
    with open(os.path.join(RESULTS, f"{names[0]}.json")) as f:
        held = set(json.load(f).get("held_out_noise_sources") or [])
    rows = clips(os.path.abspath(a.corpus), os.path.abspath(a.data))
    got = {}
    for part, paths in (("corpus", [r[0] for r in rows if r[2] != "GTZAN"]), ("gtzan", [r[0] for r in rows if r[2] == "GTZAN"])):
        res = run_ina(paths, os.path.join(os.path.abspath(a.work), part), a.ina_python, threads=2)
        got.update({path: clip_call(segs) for path, segs in res["segments"].items()})
    ina, mine = score(rows, got, held), {n: ours(n, weights) for n in names}
    print(table(ina, mine))
    path = write_results(a.name, {"ina": ina, "ours": mine, "lso_results": names,
                                  "held_out_noise_sources": sorted(held), "clip_call": "most seconds among music, "
                                  "speech, noise; silence when none (only noEnergy)"})
    print(f"\nfigures in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
