"""Benchmark the labeling job end to end (decode -> features -> network -> Parquet), each run a fresh
`python pipelines/label.py` process with its own local Ray, on this machine:

    .venv/bin/python benchmarks/label.py --model model.pt               # everything
    .venv/bin/python benchmarks/label.py --model model.pt --skip-compare --skip-data

  1. realtime factor (audio seconds / wall seconds, from the job's own summary) on the real data set
     ../shared/data/music_speech ({train,test}/{music,speech}/*.wav, 128 clips of 30 s);
  2. the same on a 1-hour file made by concatenating its test clips (all 64, then again in another
     order, cut at --hour-minutes), written to a temp dir, never into the repo;
  3. peak memory: the peak over time of the summed RSS of the job's whole process tree (driver, raylet,
     workers; shared memory counted once per process that maps it, so an upper bound), and the peak RSS
     of the largest single process, for the hour file and for one 30 s clip;
  4. segment-level precision/recall/F1 per class on a 10 ms grid over the hour (as speech/music detection
     is scored), for the fully convolutional segmenter (30 s windows, local pooling at ~1 s) and for
     overlapping short windows (--overlap-window s every --overlap-hop s, one score per window), with
     each one's realtime factor: accuracy per second.
F1 only means something with a checkpoint trained on the real data (the train job's model.pt); speed
does not depend on the weights, so any checkpoint measures it.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from pipelines import storage  # noqa: E402
from pipelines.demo import wav_bytes  # noqa: E402


def tree_rss(pid):
    """(summed RSS, largest RSS) in bytes of pid and all its descendants, from /proc (Linux)."""
    kids, rss = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/statm") as f:
                rss[int(d)] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    todo, tot, mx = [pid], 0, 0
    while todo:
        q = todo.pop()
        tot += rss.get(q, 0)
        mx = max(mx, rss.get(q, 0))
        todo.extend(kids.get(q, []))
    return tot, mx


def run_job(args, env=None):
    """-> (summary dict from the job's last line, peak tree RSS bytes, peak single-process RSS bytes, wall)."""
    cmd = [sys.executable, os.path.join(REPO, "pipelines", "label.py"), *args]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            tot, mx = tree_rss(proc.pid)
            peak[0], peak[1] = max(peak[0], tot), max(peak[1], mx)
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out = proc.stdout.read()
    proc.wait()
    th.join()
    if proc.returncode != 0:
        sys.exit(f"label.py failed ({proc.returncode}):\n{out[-3000:]}")
    m = re.search(r"label: done: (\d+) files, ([\d.]+) h of audio, (\d+) errors, ([\d.]+) s wall, ([\d.]+)x realtime", out)
    s = {"files": int(m[1]), "hours": float(m[2]), "errors": int(m[3]), "wall": float(m[4]), "rtf": float(m[5])}
    return s, peak[0], peak[1], time.time() - t0


def grid_eval(segs, truth, classes, step=0.01):
    """P/R/F1 per class on a `step` grid: segs and truth are [(start, end, label)]."""
    end = max(e for _, e, _ in truth)
    n = int(round(end / step))
    t = (np.arange(n) + 0.5) * step

    def paint(spans):
        lab = np.full(n, -1)
        for s, e, k in spans:
            lab[(t >= s) & (t < e)] = classes.index(k)
        return lab

    ref, hyp = paint(truth), paint(segs)
    res = {}
    for c, k in enumerate(classes):
        tp = np.sum((hyp == c) & (ref == c))
        p = tp / max(np.sum(hyp == c), 1)
        r = tp / max(np.sum(ref == c), 1)
        res[k] = (p, r, 2 * p * r / max(p + r, 1e-12))
    res["accuracy"] = float(np.mean(hyp == ref))
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint (the train job's model.pt)")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "music_speech"),
                   help="folder with {train,test}/{music,speech}/*.wav (default: %(default)s)")
    p.add_argument("--hour-minutes", type=float, default=60.0, help="length of the concatenated file")
    p.add_argument("--overlap-window", type=float, default=3.0, help="window of the overlapping-windows segmenter")
    p.add_argument("--overlap-hop", type=float, default=1.0, help="its hop")
    p.add_argument("--skip-data", action="store_true", help="skip the 128-clip run")
    p.add_argument("--skip-compare", action="store_true", help="skip the overlapping-windows run")
    p.add_argument("--job-args", default="", help="extra label.py flags, e.g. '--batch-size 2'")
    a = p.parse_args()

    data = os.path.normpath(a.data)
    tests = sorted(os.path.join(data, "test", k, f) for k in ("music", "speech")
                   for f in os.listdir(os.path.join(data, "test", k)) if f.endswith(".wav"))
    if not tests:
        sys.exit(f"error: no test clips in {data}/test/{{music,speech}}")
    tmp = tempfile.mkdtemp(prefix="label-bench-")
    extra = a.job_args.split()
    try:
        # the hour: all test clips shuffled, then again in another order, cut at --hour-minutes
        rng = np.random.default_rng(0)
        order = list(rng.permutation(len(tests))) + list(rng.permutation(len(tests)))
        xs, truth, t, limit = [], [], 0.0, a.hour_minutes * 60
        for i in order:
            x, _ = storage.decode(tests[i])
            x = x[: int(round(min(len(x) / 22050, limit - t) * 22050))]
            if len(x) == 0:
                break
            kind = os.path.basename(os.path.dirname(tests[i]))
            xs.append(x)
            truth.append((t, t + len(x) / 22050, kind))
            t += len(x) / 22050
        hour = os.path.join(tmp, "hour", "hour.wav")
        os.makedirs(os.path.dirname(hour))
        with open(hour, "wb") as f:
            f.write(wav_bytes(np.concatenate(xs)))
        del xs
        print(f"hour file: {t / 60:.1f} min of {len(truth)} test clips -> {hour}", flush=True)

        rows = []
        if not a.skip_data:
            s, tree, single, _ = run_job(["--input", data, "--model", a.model, "--output", os.path.join(tmp, "o-data"), *extra])
            rows.append(("music_speech (128 x 30 s)", s, tree, single))
            print(rows[-1], flush=True)
        s, tree, single, _ = run_job(["--input", tests[0], "--model", a.model, "--output", os.path.join(tmp, "o-30s"), *extra])
        rows.append(("one 30 s clip", s, tree, single))
        print(rows[-1], flush=True)
        out_h = os.path.join(tmp, "o-hour")
        s, tree, single, _ = run_job(["--input", hour, "--model", a.model, "--output", out_h,
                                      "--plot", os.path.join(tmp, "hour.png"), *extra])
        rows.append(("1-hour file, fully conv (30 s windows, ~1 s local pooling)", s, tree, single))
        print(rows[-1], flush=True)
        segs = storage.read_table(os.path.join(out_h, "segments.parquet")).to_pylist()
        evals = [("fully conv, ~1 s", s["rtf"], grid_eval([(r["start"], r["end"], r["label"]) for r in segs], truth, ["music", "speech"]))]
        if not a.skip_compare:
            out_o = os.path.join(tmp, "o-overlap")
            so, tree_o, single_o, _ = run_job(["--input", hour, "--model", a.model, "--output", out_o,
                                               "--window-seconds", str(a.overlap_window), "--hop-seconds", str(a.overlap_hop),
                                               "--resolution-seconds", "0", *extra])
            rows.append((f"1-hour file, overlapping {a.overlap_window:g} s windows every {a.overlap_hop:g} s", so, tree_o, single_o))
            print(rows[-1], flush=True)
            segs_o = storage.read_table(os.path.join(out_o, "segments.parquet")).to_pylist()
            evals.append((f"overlap {a.overlap_window:g}/{a.overlap_hop:g} s", so["rtf"],
                          grid_eval([(r["start"], r["end"], r["label"]) for r in segs_o], truth, ["music", "speech"])))

        print("\n| run | files | audio h | wall s | realtime x | peak RSS tree MiB | peak RSS largest proc MiB |")
        print("|---|---|---|---|---|---|---|")
        for name, s, tree, single in rows:
            print(f"| {name} | {s['files']} | {s['hours']:.3f} | {s['wall']:.1f} | {s['rtf']:.1f} | {tree / 2**20:.0f} | {single / 2**20:.0f} |")
        print("\n| segmenter (hour, 10 ms grid) | realtime x | music P/R/F1 | speech P/R/F1 | accuracy |")
        print("|---|---|---|---|---|")
        for name, rtf, ev in evals:
            f = lambda k: "/".join(f"{v:.3f}" for v in ev[k])  # noqa: E731
            print(f"| {name} | {rtf:.1f} | {f('music')} | {f('speech')} | {ev['accuracy']:.3f} |")
        shutil.copy(os.path.join(tmp, "hour.png"), os.path.join(tempfile.gettempdir(), "label-bench-hour.png"))
        print(f"\ntimeline plot of the hour: {os.path.join(tempfile.gettempdir(), 'label-bench-hour.png')}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
