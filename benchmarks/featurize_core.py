"""Benchmark the pure transform (decode + features) against the seed's naive librosa/matplotlib path.

    .venv/bin/python benchmarks/featurize_core.py                 # all 128 clips, naive on 32
    .venv/bin/python benchmarks/featurize_core.py --limit 16 --naive-limit 4 --threads 1

Single process, on the real data set ({train,test}/{music,speech}/*.wav). Prints:
  1. clips/s of ours: storage.decode -> model.featurize -> uint8 index (128, 1292), one clip per call
     and --batch clips stacked per call;
  2. clips/s of the naive seed path: librosa.load -> melspectrogram -> power_to_db(ref=np.max) ->
     min-max -> matplotlib magma -> dense (10, 128, 1292, 4) float32 tensor, on a --naive-limit subset;
  3. speed-up ours/naive and bytes per clip (uint8 index vs dense float32);
  4. the fraction of elements where expand(index) equals the naive dense tensor, on --check clips.
Timings include file reading and decoding; one warm-up clip per path is excluded. All clips are 30 s,
so clips/s on the naive subset is comparable with clips/s on the full set. Figures go to
benchmarks/results/featurize_core.json with the commit, machine and command.
"""

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from model import FeatureConfig, expand, featurize  # noqa: E402
from pipelines.storage import decode  # noqa: E402
from benchmarks.common import write_results  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "music_speech"),
               help="folder with {train,test}/{music,speech}/*.wav (default: %(default)s)")
p.add_argument("--limit", type=int, default=128, help="clips for our transform (default: %(default)s)")
p.add_argument("--naive-limit", type=int, default=32, help="clips for the naive path, a subset (default: %(default)s)")
p.add_argument("--batch", type=int, default=8, help="clips per featurize call in the batched run (default: %(default)s)")
p.add_argument("--check", type=int, default=4, help="clips for the expand == naive check (default: %(default)s)")
p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores, %(default)s)")
args = p.parse_args()

data = os.path.normpath(args.data)
paths = sorted(glob.glob(os.path.join(data, "*", "*", "*.wav")))
if not os.path.isdir(data) or not paths:
    sys.exit(f"error: no data set at {data} (expected {{train,test}}/{{music,speech}}/*.wav); pass --data PATH")
torch.set_num_threads(args.threads)
cfg = FeatureConfig()
W = cfg.window_samples


def spread(n):
    """n clips spread over the sorted list, so every split and label is represented."""
    n = max(1, min(n, len(paths)))
    return [paths[int(i * len(paths) / n)] for i in range(n)]


def window(x):
    x = x[:W]
    return np.pad(x, (0, W - len(x))) if len(x) < W else x


def ours(path):
    x, _ = decode(path, cfg.sample_rate)
    return featurize(window(x), cfg.sample_rate, cfg)


def ours_batched(batch):
    x = np.stack([window(decode(q, cfg.sample_rate)[0]) for q in batch])
    return featurize(x, cfg.sample_rate, cfg)


def naive(path):
    """The seed: librosa + matplotlib, dense (n_bins, n_mels, frames, 4) float32 per clip."""
    import librosa
    from matplotlib import colormaps

    y, _ = librosa.load(path, sr=cfg.sample_rate)
    y = y[:W] if len(y) >= W else np.pad(y, (0, W - len(y)))
    S = librosa.feature.melspectrogram(y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft,
                                       hop_length=cfg.hop_length, n_mels=cfg.n_mels)
    db = librosa.power_to_db(S, ref=np.max, top_db=cfg.top_db)
    norm = (db - db.min()) / (db.max() - db.min())
    rgba = colormaps[cfg.colormap](norm)                                      # (H, W, 4) float64
    lum = 0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2]
    edges = np.linspace(0, 1, cfg.n_bins + 1)
    out = np.zeros((cfg.n_bins, *norm.shape, 4), dtype=np.float32)
    for i in range(cfg.n_bins):
        upper = lum <= edges[i + 1] if i == cfg.n_bins - 1 else lum < edges[i + 1]
        mask = (lum >= edges[i]) & upper
        out[i][mask] = rgba[mask]
    return out


def timed(fn, items):
    fn(items[0])                                                              # warm-up (not timed)
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    return time.perf_counter() - t0


print(f"data {data}: {len(paths)} clips | torch threads {torch.get_num_threads()} of {os.cpu_count()} cores | "
      f"load avg {os.getloadavg()[0]:.2f} | window {cfg.window_seconds:g} s -> ({cfg.n_mels}, {cfg.n_frames()})")

# 1. ours, one clip per call and --batch clips per call
ours_paths = spread(args.limit)
t = timed(ours, ours_paths)
ours_cps = len(ours_paths) / t
print(f"ours    decode+featurize, 1/call : {len(ours_paths):4d} clips in {t:7.2f} s = {ours_cps:7.2f} clips/s")
batches = [ours_paths[i:i + args.batch] for i in range(0, len(ours_paths), args.batch)]
t = timed(ours_batched, batches)
batch_cps = len(ours_paths) / t
print(f"ours    decode+featurize, {args.batch}/call : {len(ours_paths):4d} clips in {t:7.2f} s = {batch_cps:7.2f} clips/s")
idx = ours(ours_paths[0])
t0 = time.perf_counter()
for _ in range(4):
    expand(idx)
print(f"(info)  expand() on CPU          : {(time.perf_counter() - t0) / 4 * 1e3:7.1f} ms/clip "
      f"(normally done on the device, not in featurization)")

# 2. naive, on a subset
naive_paths = spread(args.naive_limit)
t = timed(naive, naive_paths)
naive_cps = len(naive_paths) / t
print(f"naive   librosa+magma+dense      : {len(naive_paths):4d} clips in {t:7.2f} s = {naive_cps:7.2f} clips/s "
      f"(subset of {len(naive_paths)})")

# 3. speed-up and bytes per clip
idx_bytes = idx.numel() * idx.element_size()
dense_bytes = cfg.n_bins * cfg.n_mels * cfg.n_frames() * 4 * 4
print(f"speed-up ours/naive: {ours_cps / naive_cps:.1f}x (1/call), {batch_cps / naive_cps:.1f}x ({args.batch}/call)")
print(f"bytes/clip: uint8 index {idx_bytes:,} vs dense float32 {dense_bytes:,} = {dense_bytes / idx_bytes:.0f}x smaller")

# 4. expand(index) == naive dense tensor
fracs = []
for q in spread(args.check):
    ref = naive(q)                                                           # (10, H, W, 4)
    mine = expand(ours(q)).permute(1, 2, 3, 0).numpy()                      # (4, 10, H, W) -> (10, H, W, 4)
    assert mine.shape == ref.shape, (mine.shape, ref.shape)
    fracs.append(float((mine == ref).mean()))
    print(f"check   {os.path.relpath(q, data):28s}: expand(index) == naive on {fracs[-1]:.6f} of elements")
ok = min(fracs) >= 0.999
print(f"check   min fraction {min(fracs):.6f} over {len(fracs)} clips: {'OK' if ok else 'FAIL'} (need >= 0.999)")

print(f"SUMMARY ours {ours_cps:.2f} clips/s (1/call), {batch_cps:.2f} clips/s ({args.batch}/call) | naive {naive_cps:.2f} "
      f"clips/s | {ours_cps / naive_cps:.1f}x faster | {dense_bytes / idx_bytes:.0f}x fewer bytes | "
      f"agreement {min(fracs):.6f} {'OK' if ok else 'FAIL'} | threads {torch.get_num_threads()}")
path = write_results("featurize_core", {
    "data": data, "clips": len(ours_paths), "threads": torch.get_num_threads(), "batch": args.batch,
    "ours_clips_per_s": ours_cps, "ours_batched_clips_per_s": batch_cps, "naive_clips_per_s": naive_cps,
    "naive_clips": len(naive_paths), "speedup": ours_cps / naive_cps, "index_bytes": idx_bytes,
    "dense_bytes": dense_bytes, "agreement": fracs, "agreement_min": min(fracs)})
print(f"figures in {path}")
sys.exit(0 if ok else 1)
