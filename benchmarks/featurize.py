"""Benchmark the featurize job end to end against the seed's naive single-process pipeline.

    .venv/bin/python benchmarks/featurize.py                  # 128 real clips read 4 times: 512 clips

On ../shared/data/music_speech, in one run, prints:
  1. the Ray job (pipelines/featurize.py on a local Ray, all cores): clips/s and audio-seconds/s from when
     Ray is up to when the last Parquet shard is written, and bytes per clip on disk (zstd Parquet);
  2. the pure transform (decode + featurize, one process, all cores as torch threads): clips/s;
  3. the naive seed pipeline (librosa.load -> melspectrogram -> power_to_db -> matplotlib magma -> dense
     (10, 128, 1292, 4) float32 tensor saved with np.save, as the seed stored it), one process, on a
     subset: clips/s and bytes per clip;
  4. ratios: job/naive clips/s (target >= 4), dense/our bytes per clip (target >= 100), and
     pure/job clips/s (the Ray overhead, target <= 2).
The pure and naive paths each process one clip untimed first (imports, librosa's first calls, caches).
Figures go to benchmarks/results/featurize.json with the commit, machine and command.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))

from benchmarks.common import write_results  # noqa: E402


def du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def naive(paths, out_dir):
    """The seed's way: librosa + matplotlib, dense float32 tensor per clip stored with np.save."""
    import librosa
    from matplotlib import colormaps

    cmap = colormaps["magma"]
    edges = np.linspace(0, 1, 11)
    for i, p in enumerate(paths):
        y, sr = librosa.load(p, sr=22050)
        y = np.pad(y[: 30 * sr], (0, max(0, 30 * sr - len(y))))
        db = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr), ref=np.max)
        rgba = cmap((db - db.min()) / (db.max() - db.min()))
        lum = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
        dense = np.zeros((10, *db.shape, 4), np.float32)
        for b in range(10):
            m = (lum >= edges[b]) & ((lum <= edges[b + 1]) if b == 9 else (lum < edges[b + 1]))
            dense[b][m] = rgba[m]
        np.save(os.path.join(out_dir, f"{i:04d}.npy"), dense)


def pure(paths, threads):
    import torch

    from model import FeatureConfig, featurize
    from pipelines.storage import decode

    torch.set_num_threads(threads)
    cfg = FeatureConfig()
    for p in paths:
        x, _ = decode(p)
        x = np.pad(x[: cfg.window_samples], (0, max(0, cfg.window_samples - len(x))))
        featurize(x, 22050, cfg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "music_speech"))
    ap.add_argument("--repeat", type=int, default=4, help="read the data set N times over (default 4: 512 clips)")
    ap.add_argument("--naive-limit", type=int, default=32, help="clips through the naive pipeline (default 32)")
    ap.add_argument("--files-per-task", type=int, help="default: the job's own (4 tasks per CPU, <= 32 files each)")
    a = ap.parse_args()
    data = os.path.normpath(a.data)
    paths = sorted(glob.glob(os.path.join(data, "*", "*", "*.wav")))
    if not paths:
        sys.exit(f"error: no WAVs under {data} (expected {{train,test}}/{{music,speech}}/*.wav); pass --data")
    cores = os.cpu_count()
    tmp = tempfile.mkdtemp(prefix="bench-featurize-")
    try:
        # 1. the Ray job
        from pipelines import featurize

        out = os.path.join(tmp, "features")
        rc = featurize.main(["--input", data, "--output", out, "--repeat", str(a.repeat),
                             *(["--files-per-task", str(a.files_per_task)] if a.files_per_task else [])])
        assert rc == 0, f"featurize failed with exit code {rc}"
        summary = json.load(open(os.path.join(out, "_SUCCESS.json")))
        job_cps = summary["windows"] / summary["this_run"]["wall_seconds"]
        # the summary counts each file's audio once; --repeat lists every file a.repeat times (512 windows)
        job_aps = summary["audio_hours"] * 3600 * a.repeat / summary["this_run"]["wall_seconds"]
        our_bytes = du(os.path.join(out, "shards")) / summary["windows"]
        import ray

        ray.shutdown()

        # 2. the pure transform, same machine, one process with all cores, after one untimed clip
        sub = paths[: len(paths)]
        pure(sub[:1], cores)
        t = time.perf_counter()
        pure(sub, cores)
        pure_cps = len(sub) / (time.perf_counter() - t)

        # 3. the naive pipeline on a spread subset
        nsub = [paths[int(i * len(paths) / a.naive_limit)] for i in range(min(a.naive_limit, len(paths)))]
        nd = os.path.join(tmp, "naive")
        os.makedirs(os.path.join(nd, "warm-up"))
        naive(nsub[:1], os.path.join(nd, "warm-up"))              # imports librosa/matplotlib, first calls
        shutil.rmtree(os.path.join(nd, "warm-up"))
        t = time.perf_counter()
        naive(nsub, nd)
        naive_cps = len(nsub) / (time.perf_counter() - t)
        naive_bytes = du(nd) / len(nsub)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\ndata {data}: {len(paths)} clips x {a.repeat} = {summary['windows']} windows of 30 s, {cores} cores")
    print(f"  ray job   : {job_cps:8.2f} clips/s  {job_aps:8.1f} audio-s/s  {our_bytes:12,.0f} bytes/clip "
          f"(zstd Parquet, {summary['this_run']['wall_seconds']:.1f} s from Ray up to last shard)")
    print(f"  pure      : {pure_cps:8.2f} clips/s  (decode + featurize, 1 process, {cores} threads)")
    print(f"  naive     : {naive_cps:8.2f} clips/s  {naive_bytes:12,.0f} bytes/clip ({len(nsub)} clips, librosa + "
          f"matplotlib + np.save of the dense float32 tensor)")
    print(f"SUMMARY job/naive {job_cps / naive_cps:.1f}x clips/s (target >= 4) | dense/ours "
          f"{naive_bytes / our_bytes:.0f}x fewer bytes (target >= 100) | pure/job {pure_cps / job_cps:.2f} "
          f"(Ray overhead, target <= 2)")
    path = write_results("featurize", {
        "data": data, "clips": len(paths), "repeat": a.repeat, "windows": summary["windows"], "cores": cores,
        "job": {"clips_per_s": job_cps, "audio_s_per_s": job_aps, "bytes_per_clip": our_bytes,
                "wall_s": summary["this_run"]["wall_seconds"]},
        "pure": {"clips_per_s": pure_cps, "clips": len(sub), "threads": cores},
        "naive": {"clips_per_s": naive_cps, "bytes_per_clip": naive_bytes, "clips": len(nsub)},
        "ratios": {"job_over_naive": job_cps / naive_cps, "dense_over_ours_bytes": naive_bytes / our_bytes,
                   "pure_over_job": pure_cps / job_cps}})
    print(f"figures in {path}")


if __name__ == "__main__":
    main()
