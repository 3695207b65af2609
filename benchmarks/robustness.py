"""Robustness benchmark: does the labeler hold up beyond GTZAN's recording chain?

    .venv/bin/python benchmarks/robustness.py --work /tmp/rb                  # train on everything, then measure
    .venv/bin/python benchmarks/robustness.py --work /tmp/rb --model M.pt     # measure a given checkpoint
    .venv/bin/python benchmarks/robustness.py --work /tmp/rb -- --epochs 8    # extra flags for pipelines/train.py

1. Training data: ../shared/data/music_speech (the seed's split: `train` trains, `test` is only measured) and
   ../shared/data/corpus (1,611 clips, 34 sources) minus the noise sources kept apart for the noise condition
   (HELD_NOISE); featurized with --augment copies, trained with --classes music,speech,noise -> WORK/model.pt.
2. The seed's 64 test clips under each condition: as is, 16 kHz, 8 kHz, telephone band (300-3400 Hz, 8 kHz,
   mu-law), noise at 10 dB SNR (held-out recorded noise), MP3 and Ogg Vorbis at a low bitrate (real codecs,
   libsndfile). Clip accuracy: the label job's file label equals the truth (noise/silence count as wrong).
   Timelines: random 3-30 s pieces of the test clips end to end (boundaries anywhere, never on window edges),
   the condition applied to the whole timeline; segment P/R/F1 per class on a 10 ms grid, for the label job
   and for inaSpeechSegmenter on the same audio (benchmarks/peer.py; skipped when its venv is missing).
3. Leave-source-out on the corpus: pipelines/train.py --folds K --group-by source on the same features; each
   fold's test files come from sources it never trained on. Clip accuracy over music/speech clips, noise recall;
   and each fold's network labels timelines of its held-out music/speech clips (benchmarks/lso_timelines.py).
4. Silence: a 10 s silent file and a file with 1.5 s of digital silence and 2 s of -80 dBFS hiss.
Writes benchmarks/results/robustness.json (figures, commit, machine, command) and prints the table.
"""

import argparse
import csv
import json
import os
import shutil
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))

from benchmarks.common import combined, done_line, grid_eval, random_timeline, run_job, write_results  # noqa: E402
from benchmarks.lso import DEFAULT_LSO, leave_source_out  # noqa: E402
from benchmarks.lso_timelines import lso_timelines  # noqa: E402
from pipelines import augment as A  # noqa: E402
from pipelines import storage  # noqa: E402

SR = 22050
HELD_NOISE = ("etw-data(crowd)", "wesnoth-1.16-data(ambient)")   # never trained on: the noise condition's noise
# the README recipe, its schedule run whole (--patience 2 after 4 epochs cut one run to 6: robustness-fast.json),
# with the weight average (two runs with it beat the rerun without it on both classes under most conditions:
# robustness-ema.json, robustness-ema-seed1.json against robustness-repro.json)
DEFAULT_TRAIN = ["--classes", "music,speech,noise", "--epochs", "8", "--min-epochs", "8", "--patience", "2",
                 "--crops-per-window", "0.5", "--val-fraction", "0.1",
                 "--class-weighting", "sqrt", "--ema-decay", "0.995"]


def _resample(x, a, b):
    return A._resample(x, a, b) if a != b else x


def _mp3_or_ogg(x, fmt, rate, level):
    return A.encode(_resample(x, SR, rate), rate, fmt, level)


def conditions(noise: np.ndarray) -> dict:
    """name -> x (22.05 kHz) -> (file bytes, extension). The codecs' bitrates are measured on the files
    (timeline_kbit_per_s in the results)."""
    from pipelines.demo import wav_bytes

    return {
        "as is": lambda x: (wav_bytes(x, SR), "wav"),
        "16 kHz": lambda x: (wav_bytes(_resample(x, SR, 16000), 16000), "wav"),
        "8 kHz": lambda x: (wav_bytes(_resample(x, SR, 8000), 8000), "wav"),
        "telephone": lambda x: (wav_bytes(_resample(A.telephone(x, SR), SR, 8000), 8000), "wav"),
        "noise 10 dB": lambda x: (wav_bytes(A.mix_at_snr(x, noise, 10.0), SR), "wav"),
        "MP3 ~32 kbit/s": lambda x: (_mp3_or_ogg(x, "mp3", 16000, 0.86), "mp3"),
        "Ogg Vorbis ~30 kbit/s": lambda x: (_mp3_or_ogg(x, "ogg", 16000, 0.9), "ogg"),
    }


def prepare(a) -> tuple[str, np.ndarray]:
    """WORK/corpus-train.csv (corpus minus HELD_NOISE) and the held-out noise, concatenated."""
    rows = list(csv.DictReader(open(os.path.join(a.corpus, "manifest.csv"))))
    man = os.path.join(a.work, "corpus-train.csv")
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source"])
        for r in rows:
            if r["source"] not in HELD_NOISE:
                w.writerow([os.path.join(a.corpus, r["path"]), r["label"], r["source"]])
    held = [storage.decode(os.path.join(a.corpus, r["path"]), SR)[0] for r in rows if r["source"] in HELD_NOISE]
    return man, np.concatenate(held)


def featurize(a, manifest: str) -> str:
    """WORK/features (the training features, which the leave-source-out folds share), made unless finished."""
    feats = os.path.join(a.work, "features")
    if not os.path.exists(os.path.join(feats, "_SUCCESS.json")):
        out, m = run_job("featurize", ["--input", a.data, "--manifest", manifest, "--output", feats,
                                       "--augment", str(a.augment), *a.featurize_args.split()],
                                      os.path.join(a.work, "featurize.log"))
        print(done_line(out, "featurize"), f"({m['wall_s']:.0f} s with start-up)", flush=True)
    return feats


def train(a, manifest: str, extra: list[str]) -> str:
    feats, model = featurize(a, manifest), os.path.join(a.work, "model.pt")
    if not os.path.exists(model):
        out, m = run_job("train", ["--features", feats, "--output", os.path.join(a.work, "runs"), "--name", "main",
                                   *(extra or DEFAULT_TRAIN)], os.path.join(a.work, "train.log"))
        print(done_line(out, "train"), flush=True)
        shutil.copy(os.path.join(a.work, "runs", "main", "model.pt"), model)
        storage.write_json(os.path.join(a.work, "train_args.json"), {"train_args": extra or DEFAULT_TRAIN})
    return model


def own_training(a, model: str) -> tuple[list | None, dict]:
    """(the train flags, the test metrics) of the run that made WORK/model.pt, when `model` is that file
    (a rerun with --model WORK/model.pt reports them again); (None, {}) for a checkpoint from elsewhere."""
    own = os.path.join(a.work, "model.pt")
    args_file, metrics = os.path.join(a.work, "train_args.json"), os.path.join(a.work, "runs", "main", "report", "metrics.json")
    if not (os.path.exists(own) and os.path.realpath(model) == os.path.realpath(own)):
        return None, {}
    args = storage.read_json(args_file)["train_args"] if os.path.exists(args_file) else None
    return args, storage.read_json(metrics) if os.path.exists(metrics) else {}


def build_inputs(a, noise) -> dict:
    """WORK/cond/<name>/{clips/<label>/*, timelines/tl-k.*} and the truth of every timeline."""
    test = [(os.path.join(a.data, "test", k, f), k) for k in ("music", "speech")
            for f in sorted(os.listdir(os.path.join(a.data, "test", k))) if f.endswith(".wav")]
    clips = [(storage.decode(p, SR)[0], k) for p, k in test]
    rng = np.random.default_rng(0)
    lines = [random_timeline(clips, a.timeline_minutes * 60, rng) for _ in range(a.timelines)]
    truth = {}
    for name, make in conditions(noise).items():
        root = os.path.join(a.work, "cond", name.replace(" ", "_").replace("/", "_").replace("~", ""))
        if os.path.exists(os.path.join(root, "done")):
            truth[name] = (root, json.load(open(os.path.join(root, "done"))))
            continue
        for (p, k), (x, _) in zip(test, clips):
            data, ext = make(x)
            storage.write_bytes(os.path.join(root, "clips", k, os.path.basename(p)[:-4] + "." + ext), data)
        tl = {}
        for i, (x, t) in enumerate(lines):
            data, ext = make(x)
            path = os.path.join(root, "timelines", f"tl-{i}.{ext}")
            storage.write_bytes(path, data)
            tl[path] = t
        json.dump(tl, open(os.path.join(root, "done"), "w"))
        truth[name] = (root, tl)
    return truth


def measure(a, model: str, truth: dict) -> dict:
    res = {}
    for name, (root, tl) in truth.items():
        out = os.path.join(a.work, "labels" + (f"-{a.name}" if a.name != "robustness" else ""), os.path.basename(root))
        if not os.path.exists(os.path.join(out, "_SUCCESS.json")):
            text, m = run_job("label", ["--input", root, "--model", model, "--output", out, "--overwrite",
                                        *a.label_args.split()])
            speed = float(done_line(text, "label").split("x realtime")[0].split(",")[-1])
        else:
            speed = storage.read_json(os.path.join(out, "_SUCCESS.json"))["this_run"]["realtime_factor"]
        files = storage.read_table(os.path.join(out, "files.parquet")).to_pylist()
        clips = [f for f in files if f"{os.sep}clips{os.sep}" in f["uri"]]
        ok = sum(f["label"] == os.path.basename(os.path.dirname(f["uri"])) for f in clips)
        segs = storage.read_table(os.path.join(out, "segments.parquet")).to_pylist()
        real = os.path.realpath                        # WORK/cond may be a link to another run's inputs
        tr, pr = combined(tl, lambda p: [(s["start"], s["end"], s["label"]) for s in segs
                                         if real(s["uri"]) == real(p)])
        kbits = sum(os.path.getsize(p) for p in tl) * 8 / sum(t[-1][1] for t in tl.values()) / 1000
        res[name] = {"clips": len(clips), "clip_accuracy": ok / max(len(clips), 1), "ours": grid_eval(pr, tr),
                     "timeline_kbit_per_s": kbits,
                     "realtime": speed,
                     "wrong_clips": [os.path.basename(f["uri"]) + ":" + str(f["label"]) for f in clips
                                     if f["label"] != os.path.basename(os.path.dirname(f["uri"]))]}
        print(f"{name}: clips {ok}/{len(clips)}, {res[name]['ours']}", flush=True)
    return res


def peer(a, truth: dict, res: dict) -> None:
    from benchmarks.peer import run_ina
    from pipelines.demo import wav_bytes

    if not os.path.exists(a.ina_python):
        print(f"inaSpeechSegmenter: {a.ina_python} missing (see benchmarks/PEER.md): skipped", flush=True)
        return
    ina_dir = os.path.realpath(os.path.join(a.work, "ina"))   # WORK/ina may be a link to another run's
    for name, (root, tl) in truth.items():
        wavs = {}
        for p in tl:                                   # ina without ffmpeg reads 16 kHz WAV: decode for it
            w = os.path.join(ina_dir, os.path.basename(root), os.path.basename(p) + ".16k.wav")
            if not os.path.exists(w):
                storage.write_bytes(w, wav_bytes(storage.decode(p, 16000)[0], 16000))
            wavs[p] = w
        got = run_ina(list(wavs.values()), os.path.join(ina_dir, os.path.basename(root)), a.ina_python)
        segs = {p: [(s, e, lab) for lab, s, e in got["segments"][w]] for p, w in wavs.items()}
        tr, pr = combined(tl, lambda p: segs[p])
        res[name]["ina"] = grid_eval(pr, tr)
        res[name]["ina_realtime_without_load"] = got.get("audio_s", 0) / max(got.get("segment_s", 1e-9), 1e-9)
        print(f"{name}: ina {res[name]['ina']}", flush=True)


def silence(a, model: str) -> dict:
    from pipelines.demo import wav_bytes

    root = os.path.join(a.work, "silence")
    test = os.path.join(a.data, "test")
    sp = storage.decode(os.path.join(test, "speech", sorted(os.listdir(os.path.join(test, "speech")))[0]), SR)[0]
    mu = storage.decode(os.path.join(test, "music", sorted(os.listdir(os.path.join(test, "music")))[0]), SR)[0]
    hiss = (np.random.default_rng(0).standard_normal(2 * SR) * 1e-4).astype(np.float32)
    x = np.concatenate([sp[:8 * SR], np.zeros(int(1.5 * SR), np.float32), mu[:8 * SR], hiss, sp[8 * SR:16 * SR]])
    storage.write_bytes(os.path.join(root, "in", "gaps.wav"), wav_bytes(x, SR))
    storage.write_bytes(os.path.join(root, "in", "silent10s.wav"), wav_bytes(np.zeros(10 * SR, np.float32), SR))
    run_job("label", ["--input", os.path.join(root, "in"), "--model", model, "--output", os.path.join(root, "out"),
                      "--overwrite"])
    files = {os.path.basename(f["uri"]): f for f in storage.read_table(os.path.join(root, "out", "files.parquet")).to_pylist()}
    segs = storage.read_table(os.path.join(root, "out", "segments.parquet")).to_pylist()
    quiet = [(round(s["start"], 2), round(s["end"], 2)) for s in segs if s["label"] == "silence" and s["uri"].endswith("gaps.wav")]
    return {"silent_file_label": files["silent10s.wav"]["label"], "gaps_truth": [(8.0, 9.5), (17.5, 19.5)],
            "gaps_found": quiet}


def stage_walls(a) -> dict:
    """Wall times of the featurize and train runs that made WORK/model.pt, from their own records (a rerun
    that reuses them reports the same figures)."""
    out = {}
    done = os.path.join(a.work, "features", "_SUCCESS.json")
    if os.path.exists(done):
        d = storage.read_json(done)
        out["featurize_wall_s"] = d.get("this_run", d).get("wall_seconds")
        out["featurize_windows"] = d.get("windows")
    log = os.path.join(a.work, "train.log")
    if os.path.exists(log):
        import re

        m = re.findall(r"^train: done: .* in (\d+) s;", open(log).read(), re.M)
        out["train_wall_s"] = float(m[-1]) if m else None
    return out


def table(res: dict, lso: dict | None, sil: dict | None) -> str:
    f = lambda d, k: f"{d[k]['precision']:.3f} / {d[k]['recall']:.3f} / {d[k]['f1']:.3f}"  # noqa: E731
    lines = ["| condition | clip accuracy | ours music P / R / F1 | ours speech P / R / F1 | ina music F1 | ina speech F1 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in res.items():
        ina = r.get("ina")
        lines.append(f"| {name} | {r['clip_accuracy'] * 100:.1f}% ({round(r['clip_accuracy'] * r['clips'])}/{r['clips']}) | "
                     f"{f(r['ours'], 'music')} | {f(r['ours'], 'speech')} | "
                     f"{ina['music']['f1']:.3f} | {ina['speech']['f1']:.3f} |" if ina else
                     f"| {name} | {r['clip_accuracy'] * 100:.1f}% | {f(r['ours'], 'music')} | {f(r['ours'], 'speech')} | - | - |")
    if lso:
        lines.append(f"\nleave-source-out ({lso['folds']} folds by source): corpus music/speech clips "
                     f"{lso['corpus_music_speech_accuracy'] * 100:.1f}% of {lso['corpus_music_speech_clips']}, noise recall "
                     f"{lso['noise_recall'] * 100:.1f}% of {lso['noise_clips']} ({lso['noise_recall_with_silence'] * 100:.1f}% with the "
                     f"label job's `silence` right), GTZAN as an unseen source "
                     f"{lso['gtzan_unseen_accuracy'] * 100:.1f}% of {lso['gtzan_clips']} ({lso['wall_s']:.0f} s)")
    if sil:
        lines.append(f"silence: 10 s silent file -> {sil['silent_file_label']}; gaps {sil['gaps_truth']} -> {sil['gaps_found']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = os.path.join(REPO, "..", "shared", "data")
    p.add_argument("--work", required=True, help="folder for everything this writes (reused by a rerun)")
    p.add_argument("--model", help="measure this checkpoint instead of training one (leave-source-out still trains "
                                   "its folds unless --lso-folds 0)")
    p.add_argument("--data", default=os.path.join(shared, "music_speech"), help="the seed's {train,test}/{music,speech}")
    p.add_argument("--corpus", default=os.path.join(shared, "corpus"), help="the corpus with manifest.csv")
    p.add_argument("--augment", type=int, default=2, help="featurize --augment copies per training file")
    p.add_argument("--timelines", type=int, default=4, help="timelines per condition")
    p.add_argument("--timeline-minutes", type=float, default=5.0, help="length of each timeline")
    p.add_argument("--featurize-args", default="", help="extra pipelines/featurize.py flags (quoted) for the training "
                   "features, e.g. \"--band-limit-hz 4000\" (the leave-source-out folds train on the same features)")
    p.add_argument("--lso-folds", type=int, default=3, help="leave-source-out folds (0: skip)")
    p.add_argument("--lso-args", help=f"pipelines/train.py flags of each fold (default: {' '.join(DEFAULT_LSO)})")
    p.add_argument("--label-args", default="", help="extra pipelines/label.py flags (quoted), e.g. "
                   "\"--window-seconds 3 --hop-seconds 1\"; labels go to WORK/labels-NAME unless NAME is the default")
    p.add_argument("--name", default="robustness", help="results file benchmarks/results/NAME.json")
    p.add_argument("--ina-python", default="/work/ina-venv/bin/python", help="inaSpeechSegmenter's venv python")
    a = p.parse_args(argv)
    a.work, a.data, a.corpus = map(os.path.abspath, (a.work, a.data, a.corpus))
    os.makedirs(a.work, exist_ok=True)
    manifest, noise = prepare(a)
    model = a.model or train(a, manifest, extra)
    if a.model and a.lso_folds:                      # the folds train on WORK/features, made here with --model
        featurize(a, manifest)
    truth = build_inputs(a, noise)
    res = measure(a, model, truth)
    peer(a, truth, res)
    sil = silence(a, model)
    train_args, metrics = own_training(a, model)
    figures = {"conditions": res, "leave_source_out": None, "silence": sil, "held_out_noise_sources": list(HELD_NOISE),
               "train_args": train_args, "label_args": a.label_args.split(), "augment": a.augment,
               "featurize_args": a.featurize_args.split(), "model": model,
               **(stage_walls(a) if train_args or metrics else {}),   # the runs that made WORK/model.pt, if it is the model
               "train_test_metrics": {k: metrics.get(k) for k in ("test", "best_epoch", "epochs_run", "train_samples_per_s",
                                                                  "peak_memory_mb_per_worker", "history")}}
    path = write_results(a.name, figures)            # before the long part: a stop keeps these figures
    print("\n" + table(res, None, sil), flush=True)
    lso = None
    if a.lso_folds:                                  # also with --model: the folds train their own networks
        figures["leave_source_out"] = lso = leave_source_out(a)
        figures["lso_args"] = a.lso_args.split() if a.lso_args else DEFAULT_LSO
        figures["leave_source_out_timelines"] = lt = lso_timelines(a)   # each fold's network on its held-out sources
        print(f"leave-source-out timelines, all folds: music F1 {lt['all']['music']['f1']:.3f}, speech F1 "
              f"{lt['all']['speech']['f1']:.3f}", flush=True)
        path = write_results(a.name, figures)
    print("\n" + table(res, lso, sil))
    print(f"\nfigures in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
