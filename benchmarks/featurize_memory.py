"""Peak memory of the featurize job against the length of one file: a 30 s, a 1-hour and a --hours file.

    .venv/bin/python benchmarks/featurize_memory.py                  # 30 s, 1 h, 4 h
    .venv/bin/python benchmarks/featurize_memory.py --hours 2

Each file is one long WAV (22050 Hz mono, 16 bit) of random 3-30 s pieces of generated music and speech clips
(pipelines/demo.py; the content does not change the memory), written in pieces to a temp dir (never decoded
or held whole, here or in the job). Each run is a fresh `python pipelines/featurize.py --input DIR --output
OUT` process with its own local Ray, sampled every 0.2 s (benchmarks/common.py run_job): the summed RSS of
its whole process tree (driver, raylet, workers; shared memory such as Ray's object store counted once per
process that maps it, so an upper bound) and the largest single process, with its name and the shared part
of its RSS. Target (issue 11): the largest process for the long file <= 1.5x that for the 30 s file.
Figures go to benchmarks/results/featurize_memory.json with the commit, machine and command.
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

from benchmarks.common import run_job, write_results  # noqa: E402
from pipelines.demo import SR, make_clip  # noqa: E402


def write_long_wav(path: str, seconds: float, seed: int, sr: int = SR) -> None:
    """Random 3-30 s pieces of 8 generated 30 s clips (music and speech), end to end, written piece by piece."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    clips = [make_clip(kind, 30.0, seed + k) for k, kind in enumerate(["music", "speech"] * 4)]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    left = int(seconds * sr)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16", format="WAV") as f:
        while left > 0:
            x = clips[int(rng.integers(len(clips)))]
            n = min(int(rng.uniform(3.0, 30.0) * sr), left)
            a = int(rng.integers(0, len(x) - n + 1))
            f.write(x[a:a + n])
            left -= n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=4.0, help="length of the long file")
    p.add_argument("--job-args", default="", help="extra featurize.py flags")
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="featurize-memory-")
    rows = []
    try:
        for name, seconds in (("30 s file", 30.0), ("1-hour file", 3600.0), (f"{a.hours:g}-hour file", a.hours * 3600)):
            folder = os.path.join(tmp, re.sub(r"\W+", "-", name))
            write_long_wav(os.path.join(folder, "in", "long.wav"), seconds, seed=len(rows))
            out, mem = run_job("featurize", ["--input", os.path.join(folder, "in"), "--output",
                                             os.path.join(folder, "out"), *a.job_args.split()])
            m = re.search(r"featurize: done: (\d+) files, (\d+) windows, ([\d.]+) h of audio.*?([\d.]+) s wall", out)
            rows.append({"run": name, "files": int(m[1]), "windows": int(m[2]), "audio_hours": float(m[3]),
                         "job_wall_s": float(m[4]), "process_wall_s": mem.pop("wall_s"), **mem})
            print({k: v for k, v in rows[-1].items() if k != "largest_processes"}, flush=True)
            shutil.rmtree(folder)
        base = rows[0]
        ratios = {r["run"]: {"tree": r["peak_tree_mib"] / base["peak_tree_mib"],
                             "largest": r["peak_largest_mib"] / base["peak_largest_mib"]} for r in rows[1:]}
        path = write_results("featurize_memory", {"runs": rows, "memory_vs_30s": ratios,
                                                  "target_largest_ratio": 1.5})
        print("\n| run | windows | peak RSS tree MiB | largest process MiB (which) | vs 30 s (tree / largest) |\n"
              "|---|---|---|---|---|")
        for r in rows:
            q = ratios.get(r["run"], {"tree": 1.0, "largest": 1.0})
            print(f"| {r['run']} | {r['windows']} | {r['peak_tree_mib']:.0f} | {r['peak_largest_mib']:.0f} "
                  f"({r['largest_process']}) | {q['tree']:.2f} / {q['largest']:.2f} |")
        print(f"\nfigures in {path}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
