"""What an augmented copy costs at featurize time, per condition, in one process on one core:

    .venv/bin/python benchmarks/augment.py [--clips 8]

For real 30 s clips of ../shared/data/music_speech (decoded once, outside the timing): the time of each
archive condition of pipelines/augment.py on the waveform, of featurizing one 30 s window (the uint8
index), and of decoding the file, each the median of --repeats after one warm-up call; plus the bytes a
stored copy adds (zstd Parquet of the index, measured). An augmented copy costs its condition plus one
featurize; it is a row like any other, so training reads it at no extra cost. Figures go to
benchmarks/results/augment.json.
"""

import argparse
import io
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.common import timed, write_results  # noqa: E402


def main():
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from model import FeatureConfig, featurize
    from pipelines import augment as A
    from pipelines import storage

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "music_speech"))
    p.add_argument("--clips", type=int, default=4, help="clips of each class to time")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)                                # as in a featurize task
    cfg = FeatureConfig()
    paths = [os.path.join(a.data, "train", k, f) for k in ("music", "speech")
             for f in sorted(os.listdir(os.path.join(a.data, "train", k)))[:a.clips]]
    clips = [storage.decode(q, cfg.sample_rate)[0][:cfg.window_samples] for q in paths]
    noise = np.random.default_rng(0).standard_normal(cfg.window_samples).astype(np.float32) * 0.1
    kinds = {"band8000": lambda x, r: A.band_limit(x, cfg.sample_rate, 8000),
             "phone": lambda x, r: A.telephone(x, cfg.sample_rate),
             "noise": lambda x, r: A.augment(x, cfg.sample_rate, "noise", r, noise)[0],
             "mp3": lambda x, r: A.codec(x, cfg.sample_rate, "mp3", 0.85),
             "ogg": lambda x, r: A.codec(x, cfg.sample_rate, "ogg", 0.85),
             "eq": lambda x, r: A.equalize(x, cfg.sample_rate, r),
             "speed": lambda x, r: A.augment(x, cfg.sample_rate, "speed", r)[0]}   # opt-in (--augment-kinds)
    res = {k: [] for k in (*kinds, "featurize", "decode")}
    sizes = []
    for q, x in zip(paths, clips):
        for k, f in kinds.items():
            res[k].append(timed(lambda: f(x, np.random.default_rng(0)), a.repeats))
        res["featurize"].append(timed(lambda: featurize(x, cfg.sample_rate, cfg), a.repeats))
        res["decode"].append(timed(lambda: storage.decode(q, cfg.sample_rate), a.repeats))
        buf = io.BytesIO()
        idx = featurize(A.band_limit(x, cfg.sample_rate, 8000), cfg.sample_rate, cfg).numpy()
        pq.write_table(pa.table({"index": [idx.tobytes()]}), buf, compression="zstd")
        sizes.append(len(buf.getvalue()))
    ms = {k: float(np.mean(v) * 1000) for k, v in res.items()}
    figures = {"ms_per_30s_clip_one_thread": ms, "clips": len(paths), "stored_bytes_per_copy": float(np.mean(sizes)),
               "copy_cost_vs_original": {k: (ms[k] + ms["featurize"]) / (ms["decode"] + ms["featurize"]) for k in kinds}}
    path = write_results("augment", figures)
    print("| step (30 s clip, 1 thread) | ms | an augmented copy / the original row |\n|---|---|---|")
    for k in (*kinds, "featurize", "decode"):
        ratio = figures["copy_cost_vs_original"].get(k)
        print(f"| {k} | {ms[k]:.1f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    print(f"\nstored: {figures['stored_bytes_per_copy']:,.0f} bytes per copy (zstd Parquet index); figures in {path}")


if __name__ == "__main__":
    main()
