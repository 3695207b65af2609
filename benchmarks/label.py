"""Benchmark the labeling job end to end (decode -> features -> network -> Parquet), each run a fresh
`python pipelines/label.py` process with its own local Ray, on this machine:

    .venv/bin/python benchmarks/label.py --model model.pt               # everything
    .venv/bin/python benchmarks/label.py --model model.pt --skip-compare --skip-data --hours 1

  1. realtime factor (audio seconds / wall seconds, from the job's own summary, Ray start-up excluded, and
     the whole process's wall time, start-up included) on ../shared/data/music_speech (128 clips of 30 s);
  2. the same on timelines of random 3-30 s pieces of its test clips (boundaries anywhere, never on a
     window edge: whole clips end to end would put every boundary on one and flatter the segmenter), of
     30 s, 1 hour and --hours hours, written to a temp dir, never into the repo;
  3. peak memory of each run: the summed RSS of the job's whole process tree (driver, raylet, workers;
     shared memory counted once per process that maps it, so an upper bound) and the largest single
     process (which one, and the shared part of its RSS), sampled every 0.2 s;
  4. segment-level precision/recall/F1 per class on a 10 ms grid over the hour, for the default (30 s
     windows, local pooling at ~1 s) and for overlapping short windows (--overlap-window s every
     --overlap-hop s, one score per window), with each one's realtime factor.
The first run (one 30 s clip) also warms the machine's file cache and Python imports before the timed runs.
Figures go to benchmarks/results/label.json (--results) with the commit, machine and command.
"""

import argparse
import os
import re
import shutil
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))

from benchmarks.common import grid_eval, random_timeline, run_job, write_results  # noqa: E402
from pipelines import storage  # noqa: E402
from pipelines.demo import wav_bytes  # noqa: E402


def label(name: str, args: list[str]) -> dict:
    out, mem = run_job("label", args)
    m = re.search(r"label: done: (\d+) files, ([\d.]+) h of audio, (\d+) errors, ([\d.]+) s wall, ([\d.]+)x realtime", out)
    r = {"run": name, "files": int(m[1]), "audio_hours": float(m[2]), "errors": int(m[3]), "job_wall_s": float(m[4]),
         "realtime": float(m[5]), "process_wall_s": mem["wall_s"],
         "realtime_with_startup": float(m[2]) * 3600 / mem["wall_s"], **mem}
    print(r, flush=True)
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint (the train job's model.pt)")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "music_speech"),
                   help="folder with {train,test}/{music,speech}/*.wav (default: %(default)s)")
    p.add_argument("--hours", type=float, default=4.0, help="length of the long timeline (memory at length)")
    p.add_argument("--overlap-window", type=float, default=3.0, help="window of the overlapping-windows segmenter")
    p.add_argument("--overlap-hop", type=float, default=1.0, help="its hop")
    p.add_argument("--skip-data", action="store_true", help="skip the 128-clip run")
    p.add_argument("--skip-compare", action="store_true", help="skip the overlapping-windows run")
    p.add_argument("--job-args", default="", help="extra label.py flags, e.g. '--batch-size 2'")
    p.add_argument("--results", default="label", help="benchmarks/results/<this>.json (another name for a run "
                                                      "whose speed is not the README's, e.g. on a busy machine)")
    a = p.parse_args()

    data = os.path.normpath(a.data)
    tests = sorted(os.path.join(data, "test", k, f) for k in ("music", "speech")
                   for f in os.listdir(os.path.join(data, "test", k)) if f.endswith(".wav"))
    if not tests:
        sys.exit(f"error: no test clips in {data}/test/{{music,speech}}")
    tmp = tempfile.mkdtemp(prefix="label-bench-")
    extra = a.job_args.split()
    clips = [(storage.decode(t)[0], os.path.basename(os.path.dirname(t))) for t in tests]
    try:
        files, rng = {}, np.random.default_rng(0)
        long = a.hours != 1                                   # --hours 1: the hour is the long timeline
        for name, seconds in (("30s", 30.0), ("hour", 3600.0), *([("long", a.hours * 3600)] if long else [])):
            x, truth = random_timeline(clips, seconds, rng)
            files[name] = (os.path.join(tmp, name, f"{name}.wav"), truth)
            storage.write_bytes(files[name][0], wav_bytes(x))
            del x
        print(f"timelines of random 3-30 s pieces of the {len(tests)} test clips in {tmp}", flush=True)
        job = lambda name, f, *more: label(name, ["--input", f, "--model", a.model,  # noqa: E731
                                                  "--output", os.path.join(tmp, "o-" + re.sub(r"\W+", "-", name)),
                                                  *more, *extra])
        rows = [job("one 30 s timeline (warm-up and start-up cost)", files["30s"][0])]
        if not a.skip_data:
            rows.append(job("music_speech (128 x 30 s clips)", data))
        rows.append(job("1-hour timeline", files["hour"][0]))
        hour = rows[-1]
        if long:
            rows.append(job(f"{a.hours:g}-hour timeline", files["long"][0]))
        segs = storage.read_table(os.path.join(tmp, "o-1-hour-timeline", "segments.parquet")).to_pylist()
        evals = {"default (30 s windows, ~1 s pooling)": {
            "realtime": hour["realtime"],
            **grid_eval([(r["start"], r["end"], r["label"]) for r in segs], files["hour"][1])}}
        if not a.skip_compare:
            name = f"overlapping {a.overlap_window:g} s windows every {a.overlap_hop:g} s"
            rows.append(job(f"1-hour timeline, {name}", files["hour"][0], "--window-seconds", str(a.overlap_window),
                            "--hop-seconds", str(a.overlap_hop), "--resolution-seconds", "0"))
            out = os.path.join(tmp, "o-" + re.sub(r"\W+", "-", rows[-1]["run"]))
            segs = storage.read_table(os.path.join(out, "segments.parquet")).to_pylist()
            evals[name] = {"realtime": rows[-1]["realtime"],
                           **grid_eval([(r["start"], r["end"], r["label"]) for r in segs], files["hour"][1])}
        base = rows[0]
        ratios = {r["run"]: {"tree": r["peak_tree_mib"] / base["peak_tree_mib"],
                             "largest": r["peak_largest_mib"] / base["peak_largest_mib"]} for r in rows[1:]}
        path = write_results(a.results, {"model": a.model, "runs": rows, "segments_hour": evals,
                                       "memory_vs_30s": ratios})
        print("\n| run | files | audio h | realtime x (job) | realtime x (with start-up) | peak RSS tree MiB | "
              "largest process MiB (which) |\n|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['run']} | {r['files']} | {r['audio_hours']:.3f} | {r['realtime']:.1f} | "
                  f"{r['realtime_with_startup']:.1f} | {r['peak_tree_mib']:.0f} | {r['peak_largest_mib']:.0f} "
                  f"({r['largest_process']}) |")
        print("\n| segmenter (hour, 10 ms grid) | realtime x | music P/R/F1 | speech P/R/F1 |\n|---|---|---|---|")
        for name, ev in evals.items():
            f = lambda k: "/".join(f"{ev[k][m]:.3f}" for m in ("precision", "recall", "f1"))  # noqa: E731
            print(f"| {name} | {ev['realtime']:.1f} | {f('music')} | {f('speech')} |")
        print(f"\nfigures in {path}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
