"""The streaming ingest path in a Ray Train worker: every epoch reads the worker's streaming_split part of
`train` through Ray Data and cuts random crops of it as it goes, so the training set is bounded by disk,
not by the workers' memory (pipelines/train_data.py builds the datasets; the in-memory path is there too).

Equal steps on every rank (DDP all-reduces every step; a rank with fewer steps would hang the others):
streaming_split(equal=True) (Ray Train's DataConfig) hands every worker exactly windows // workers rows
per epoch, and the epoch needs exactly steps_per_epoch x local batch crops from them. crop_counts spreads
that number over the pass by position (window i of the pass gets floor((i+1) need/rows) - floor(i need/rows)
crops), so one full pass gives exactly the crops needed, every rank the same. Guards, should a pass hold
other than the expected rows: crops beyond the need end the epoch early (Ray Data supports leaving an
iteration: the split is marked finished), and a short pass is topped up with new crops of its last windows.

Mixing: the file order is new every epoch (FileShuffleConfig), each worker's rows pass a local shuffle
buffer of cfg.shuffle_buffer windows (Ray Data's iter_batches), and the crops a small pool, so that the
crops of one window seldom share a batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from model import FeatureConfig
from model.crops import mask_, random_crops, real_frames
from pipelines.train_config import TrainConfig
from pipelines.train_data import hash_rank, rows_to_arrays

POOL_BATCHES = 8  # crops waiting in the pool, in local batches; a batch draws from it at random


def crop_counts(start: int, n: int, rows: int, need: int) -> np.ndarray:
    """Crops for windows start .. start+n-1 of a pass of `rows` windows that must give `need` crops in all:
    window i gets floor((i+1) need / rows) - floor(i need / rows) (the first `rows` sum to `need`)."""
    i = np.arange(start, start + n + 1, dtype=np.int64)
    return np.diff(i * need // max(1, rows))


def table_arrays(t: pa.Table, fcfg: FeatureConfig, classes: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch of shard rows -> (uint8 index (B, n_mels, n_frames), labels, real frames), in its order."""
    shape = (fcfg.n_mels, fcfg.n_frames())
    index = np.stack([np.frombuffer(b, np.uint8).reshape(shape) for b in t.column("index").to_pylist()]) \
        if t.num_rows else np.zeros((0, *shape), np.uint8)
    label = np.array([classes.index(x) for x in t.column("label").to_pylist()], np.int64)
    real = np.array([real_frames(d, fcfg) for d in t.column("window_duration").to_pylist()], np.int64)
    return index, label, real


class _Pool:
    """Crops waiting to be batched; batches draw at random from it."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.x, self.y = rng, None, None

    def __len__(self) -> int:
        return 0 if self.y is None else len(self.y)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = x if self.x is None else np.concatenate([self.x, x])
        self.y = y if self.y is None else np.concatenate([self.y, y])

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pick = np.zeros(len(self), bool)
        pick[self.rng.choice(len(self), n, replace=False)] = True
        out = self.x[pick], self.y[pick]
        self.x, self.y = self.x[~pick], self.y[~pick]
        return out


def stream_batches(tables, cfg: TrainConfig, fcfg: FeatureConfig, rows: int, rng: np.random.Generator,
                   world: int, rank: int = 0):
    """An epoch of the stream path from an iterable of pyarrow tables of shard rows (the worker's pass over
    its part, `rows` windows expected): exactly steps_per_epoch local batches (uint8 crops, masked; labels)."""
    local_batch, steps = max(1, cfg.batch_size // world), cfg.steps_per_epoch
    need, seen, made, done = steps * local_batch, 0, 0, 0
    pool, last = _Pool(rng), None

    def batch():
        x, y = pool.take(local_batch)
        mask_(x, rng, cfg.time_masks, cfg.time_mask_fraction, cfg.freq_masks, cfg.freq_mask_mels)
        return x, y

    for t in tables:
        index, label, real = table_arrays(t, fcfg, cfg.classes)
        rep = np.repeat(np.arange(len(label)), crop_counts(seen, len(label), rows, need))
        seen += len(label)
        if len(label):
            last = (index, label, real)
        if len(rep):
            pool.add(random_crops(index[rep], real[rep], cfg.crop_frames, rng), label[rep])
            made += len(rep)
        while done < steps and len(pool) >= (local_batch if made >= need else POOL_BATCHES * local_batch):
            yield batch()
            done += 1
        if done == steps:
            return                      # more rows than expected: leave the pass (Ray Data ends it)
    if last is None and done < steps:
        raise RuntimeError(f"rank {rank} got no training windows from its streaming_split part")
    while done < steps:
        if len(pool) < local_batch:     # fewer rows than expected: new crops of the pass's last windows
            index, label, real = last
            pick = rng.integers(0, len(label), local_batch - len(pool))
            pool.add(random_crops(index[pick], real[pick], cfg.crop_frames, rng), label[pick])
        yield batch()
        done += 1


class StreamIngest:
    """The stream path in the worker: training crops from its streaming_split part of `train`, read anew
    every epoch; val and test read at each evaluation (every worker reads all, keeps its part by hash)."""

    def __init__(self, cfg: TrainConfig, fcfg: FeatureConfig, rank: int, world: int):
        import ray.train

        self.cfg, self.fcfg, self.rank, self.world = cfg, fcfg, rank, world
        self.shards = {r: ray.train.get_dataset_shard(r) for r in ("train", "val", "test")}

    def batches(self, rng: np.random.Generator):
        it = self.shards["train"].iter_batches(
            batch_size=max(1, self.cfg.batch_size // self.world), batch_format="pyarrow",
            local_shuffle_buffer_size=self.cfg.shuffle_buffer, local_shuffle_seed=int(rng.integers(2**31)))
        return stream_batches(it, self.cfg, self.fcfg, self.cfg.windows["train"] // self.world, rng, self.world,
                              self.rank)

    def windows(self, role: str):
        """This worker's `val` or `test` windows, in parts of up to 64 rows."""
        for b in self.shards[role].iter_batches(batch_size=64, batch_format="pyarrow"):
            rows = [r for r in b.to_pylist() if hash_rank(r, self.world) == self.rank]
            if rows:
                yield rows_to_arrays(rows, self.fcfg, self.cfg.classes)
