"""Cluster sizing for an archive: measure the per-core featurize rate here, then do the arithmetic.

    .venv/bin/python cluster/sizing.py --features /tmp/feat_sizing            # after a featurize run
    .venv/bin/python cluster/sizing.py --hours 100000 --label-windows-per-gpu-s 500

1. per-core rate: one process, one torch thread, storage.decode -> model.featurize (exactly what a featurize
   task does per file) on --clips 30 s clips of the real data set, as they are (22.05 kHz mono WAV) and
   re-encoded the way archives usually hold audio (44.1 kHz stereo FLAC and MP3: decoding, down-mix and
   resampling to 22.05 kHz are part of the cost). The re-encoding is not timed; one warm-up clip is not timed.
2. Parquet bytes per 30 s window: from a finished featurize output (--features: its shard bytes over its
   windows), else the raw uint8 index (165,376 bytes) as an upper bound.
3. the arithmetic for --hours of audio: windows, CPU core-hours to featurize, Parquet bytes, and GPU-hours to
   label when --label-windows-per-gpu-s (measured by the label job on a GPU) is given.
Timings include reading the file from the page cache, not S3: on a cluster, reads overlap with compute.
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def measure(paths, cfg) -> float:
    """clips/s of decode + featurize, one clip per call (as featurize_files does per file)."""
    from model import featurize
    from pipelines.storage import decode

    def one(p):
        x, _ = decode(p, cfg.sample_rate)
        w = np.zeros(cfg.window_samples, np.float32)
        w[: min(len(x), len(w))] = x[: len(w)]
        featurize(w, cfg.sample_rate, cfg)

    one(paths[0])
    t0 = time.perf_counter()
    for p in paths:
        one(p)
    return len(paths) / (time.perf_counter() - t0)


def reencode(paths, out, fmt, sr=44100):
    """The clips as stereo `fmt` at `sr` (the same audio, resampled and duplicated to two channels)."""
    import soundfile as sf

    from pipelines.storage import decode

    res = []
    for i, p in enumerate(paths):
        x, _ = decode(p, sr)
        q = os.path.join(out, f"c{i}.{fmt.lower()}")
        sf.write(q, np.stack([x, 0.9 * x], axis=1), sr, format=fmt)
        res.append(q)
    return res


def parquet_bytes_per_window(features: str) -> tuple[float, int, int]:
    done = json.load(open(os.path.join(features, "_SUCCESS.json")))
    files = [f for r in done["runs"] for f in glob.glob(os.path.join(features, "shards", r, "*.parquet"))]
    total = sum(os.path.getsize(f) for f in files)
    return total / done["windows"], total, done["windows"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "music_speech"),
                   help="folder of 30 s WAV clips (default: %(default)s)")
    p.add_argument("--clips", type=int, default=16, help="clips per format (default: %(default)s)")
    p.add_argument("--formats", default="WAV,FLAC,MP3", help="WAV = the data set as is; FLAC/MP3 = 44.1 kHz stereo")
    p.add_argument("--features", help="a finished featurize output of the same data: its Parquet bytes per window")
    p.add_argument("--hours", type=float, default=100_000, help="archive size in hours of audio (default: %(default)s)")
    p.add_argument("--label-windows-per-gpu-s", type=float,
                   help="label job throughput, 30 s windows per GPU-second (measured on a GPU)")
    a = p.parse_args(argv)

    import torch

    from model import FeatureConfig

    torch.set_num_threads(1)
    cfg = FeatureConfig()
    paths = sorted(glob.glob(os.path.join(os.path.normpath(a.data), "**", "*.wav"), recursive=True))
    if not paths:
        sys.exit(f"error: no .wav files under {a.data}")
    paths = [paths[int(i * len(paths) / a.clips)] for i in range(min(a.clips, len(paths)))]
    print(f"per-core featurize rate: {len(paths)} clips of {cfg.window_seconds:g} s, 1 torch thread, "
          f"load avg {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in a.formats.split(","):
            clips = paths if fmt == "WAV" else reencode(paths, tmp, fmt)
            rates[fmt] = measure(clips, cfg)
            what = "22.05 kHz mono (as is)" if fmt == "WAV" else "44.1 kHz stereo"
            print(f"  {fmt:4s} {what:23s}: {rates[fmt]:7.2f} clips/s per core = "
                  f"{rates[fmt] * cfg.window_seconds / 3600:.3f} h of audio per core-second")

    raw = cfg.n_mels * cfg.n_frames()
    if a.features:
        bpw, total, n = parquet_bytes_per_window(a.features)
        print(f"Parquet: {total:,} bytes of shards / {n} windows = {bpw:,.0f} bytes per window "
              f"(raw uint8 index {raw:,}; zstd keeps {bpw / raw:.1%})")
    else:
        bpw = raw
        print(f"Parquet: no --features given: raw uint8 index {raw:,} bytes per window (upper bound)")

    windows = a.hours * 3600 / cfg.window_seconds
    print(f"\nArchive of {a.hours:,.0f} h = {a.hours * 3600:,.0f} s / {cfg.window_seconds:g} s = {windows:,.0f} windows")
    for fmt, r in rates.items():
        core_h = windows / r / 3600
        print(f"  featurize, {fmt:4s}: {windows:,.0f} / {r:.2f} clips/s = {core_h:,.0f} core-hours "
              f"= {core_h / 32:,.1f} h on one 32-vCPU node = {core_h / 32 / 32:,.2f} h on 32 nodes")
    print(f"  Parquet: {windows:,.0f} x {bpw:,.0f} B = {windows * bpw / 1e12:,.2f} TB "
          f"({bpw * cfg.window_seconds ** -1 * 3600 / 1e6:,.1f} MB per hour of audio)")
    if a.label_windows_per_gpu_s:
        gpu_h = windows / a.label_windows_per_gpu_s / 3600
        print(f"  label: {windows:,.0f} / {a.label_windows_per_gpu_s:g} windows/GPU-s = {gpu_h:,.1f} GPU-hours")
    else:
        print("  label: GPU-hours = windows / (windows per GPU-second): pass --label-windows-per-gpu-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
