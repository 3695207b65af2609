"""Training rows: from featurize's Parquet shards to the arrays a Ray Train worker trains on.

The driver reads the file table (labels, splits, sources) to plan the splits and hands Ray Train the Ray
Data datasets of the run's ingest path (TrainConfig.ingest_path):
  memory  `train` (shuffled once, split between the workers by streaming_split) and `eval` (val and test
          rows, every worker reads all and keeps its part by hash). Each worker drains its part once into
          memory: uint8 magma indices (~165 kB per 30 s window), labels, real frames and window keys; every
          epoch then cuts crops of those arrays (MemoryIngest, here).
  stream  `train` read in a new random file order every epoch (no global shuffle: it would materialize
          the whole set), split by streaming_split; `val` and `test` apart, read at each evaluation by every
          worker, which keeps its part by hash. pipelines/train_stream.py is the worker's side.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model import FeatureConfig
from model.crops import mask_, random_crops, real_frames
from pipelines import console, shards, storage
from pipelines.storage import S3Options
from pipelines.train_config import TrainConfig

ROW_COLUMNS = ["uri", "augment", "window_start", "window_duration", "label", "n_mels", "n_frames", "index"]


def file_table(features: str, s3: S3Options | None = None) -> tuple[dict, dict, dict]:
    """Of a finished featurize output (plain pyarrow): ({uri: (label, split)} of the labeled files,
    {uri: source}, {uri: rows of the file and its augmented copies})."""
    try:
        t = shards.read_rows(features, s3, ["uri", "label", "split", "source", "augment"]).to_pylist()
    except (KeyError, ValueError, pa.ArrowInvalid) as e:
        raise ValueError(f"{features} was written by an older featurize (no source/augment columns): "
                         f"featurize it again ({e})") from e
    files, sources, windows = {}, {}, {}
    for r in t:
        windows[r["uri"]] = windows.get(r["uri"], 0) + 1       # every row: the file and its augmented copies
        sources[r["uri"]] = r.get("source") or ""
        if r.get("label") is not None:
            files[r["uri"]] = (r["label"], r.get("split"))
    return files, sources, windows


def select(batch: pa.Table, roles: dict, clean_roles: tuple = ("test",)) -> pa.Table:
    """Ray Data UDF: the rows of the files in roles ({uri: role}), with a `role` column; in clean_roles
    only the files as they are (test metrics are on real recordings, not on their augmented copies)."""
    t = batch.filter(pc.is_in(batch.column("uri"), pa.array(sorted(roles), pa.string())))
    t = t.append_column("role", pa.array([roles[u] for u in t.column("uri").to_pylist()], pa.string()))
    copy = pc.and_(pc.is_in(t.column("role"), pa.array(list(clean_roles), pa.string())),
                   pc.not_equal(t.column("augment"), ""))
    return t.filter(pc.invert(copy))


def describe(cfg: TrainConfig) -> str:
    """The ingest choice for the driver's line."""
    def mib(x):
        return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"
    how = f"{cfg.ingest_path} ({cfg.ingest}: a worker's in-memory load ~{mib(cfg.worker_data_mb)} MiB, budget " \
          f"{mib(cfg.memory_budget_mb)} MiB)"
    return how + (f", shuffle buffer {cfg.shuffle_buffer} windows" if cfg.ingest_path == "stream" else "")


def _read(shard_dirs: list[str], s3: S3Options | None, verbose: bool, shuffle=None):
    import ray

    fs = storage.arrow_fs(shard_dirs[0], s3)
    return console.quiet(ray.data.read_parquet([storage.arrow_path(d) for d in shard_dirs], filesystem=fs,
                                               shuffle=shuffle), verbose).select_columns(ROW_COLUMNS)


def datasets(shard_dirs: list[str], by_role: dict, seed: int, s3: S3Options | None = None,
             verbose: bool = False, ingest: str = "memory") -> dict:
    """Ray Train's datasets: memory: `train` (the train files, shuffled) and `eval` (val and test files);
    stream: `train` (file order new every epoch), `val` and `test`."""
    if ingest == "stream":
        from ray.data import FileShuffleConfig

        def part(base, role):
            return base.map_batches(select, batch_format="pyarrow",
                                    fn_kwargs={"roles": {u: role for u in by_role[role]}})
        # a new file order per execution (= per epoch); the workers' local shuffle buffers mix the rows
        train = part(_read(shard_dirs, s3, verbose, FileShuffleConfig(seed=seed, reseed_after_execution=True)), "train")
        base = _read(shard_dirs, s3, verbose)
        return {"train": train, "val": part(base, "val"), "test": part(base, "test")}
    base = _read(shard_dirs, s3, verbose)
    # featurize writes blocks of consecutive (sorted: same-class) files, and streaming_split hands out whole
    # blocks: shuffle the rows, or one worker gets all music and the other all speech, every local batch is
    # one class, and BatchNorm learns from the batch composition (100% in training, 50% in evaluation)
    return {"train": base.map_batches(select, batch_format="pyarrow",
                                      fn_kwargs={"roles": {u: "train" for u in by_role["train"]}})
            .random_shuffle(seed=seed),
            "eval": base.map_batches(select, batch_format="pyarrow", fn_kwargs={
                "roles": {u: r for r in ("val", "test") for u in by_role[r]}})}


# ------------------------------------------------------------------------------------------------
# in the worker

def key(r: dict) -> str:
    """A window's file key: the file, or the file + its augmented copy ("uri#1:band8000")."""
    return f"{r['uri']}#{r['augment']}" if r.get("augment") else r["uri"]


def hash_rank(r: dict, world: int) -> int:
    return zlib.crc32(f"{key(r)}\0{r['window_start']:.6f}".encode()) % world


def load_rows(it, cfg: FeatureConfig, classes: tuple, keep=None) -> dict:
    """Drain a Ray Data iterator of shard rows into memory: uint8 index (N, n_mels, n_frames), labels,
    real frames and keys, sorted by (key, window_start). keep(row) filters rows."""
    rows = []
    for b in it.iter_batches(batch_size=64, batch_format="pyarrow"):
        for r in b.to_pylist():
            if keep is None or keep(r):
                rows.append(r)
    return rows_to_arrays(rows, cfg, classes)


def rows_to_arrays(rows: list[dict], cfg: FeatureConfig, classes: tuple) -> dict:
    rows = sorted(rows, key=lambda r: (key(r), r["window_start"]))
    if rows:
        index = np.stack([shards.index_of(r) for r in rows])
    else:
        index = np.zeros((0, cfg.n_mels, cfg.n_frames()), np.uint8)
    return {"index": index,
            "label": np.array([classes.index(r["label"]) for r in rows], np.int64),
            "real": np.array([real_frames(r["window_duration"], cfg) for r in rows], np.int64),
            "uri": [key(r) for r in rows], "start": [float(r["window_start"]) for r in rows]}


def worker_data(rank: int, world: int, cfg: FeatureConfig, classes: tuple) -> tuple[dict, dict, dict]:
    """This worker's (train, val, test) arrays, read once through Ray Data: its streaming_split part of
    `train`; of `eval` (val and test in one dataset: one Ray Data execution per worker) its rows by hash."""
    import ray.train

    train = load_rows(ray.train.get_dataset_shard("train"), cfg, classes)
    ev = []
    for b in ray.train.get_dataset_shard("eval").iter_batches(batch_size=64, batch_format="pyarrow"):
        ev += [r for r in b.to_pylist() if hash_rank(r, world) == rank]
    val = rows_to_arrays([r for r in ev if r["role"] == "val"], cfg, classes)
    test = rows_to_arrays([r for r in ev if r["role"] == "test"], cfg, classes)
    if len(train["label"]) == 0:
        raise RuntimeError(f"rank {rank} got no training windows")
    return train, val, test


def memory_batches(train: dict, cfg: TrainConfig, rng: np.random.Generator, world: int):
    """An epoch of the in-memory path: steps_per_epoch local batches (uint8 crops, masked; labels), windows
    in a random order, a new permutation when one runs out."""
    local_batch, n_local = max(1, cfg.batch_size // world), len(train["label"])
    perm, pos = rng.permutation(n_local), 0
    for _ in range(cfg.steps_per_epoch):
        if pos + local_batch > n_local:
            perm, pos = np.concatenate([perm[pos:], rng.permutation(n_local)]), 0
        idx = perm[pos:pos + local_batch]
        pos += local_batch
        x = random_crops(train["index"][idx], train["real"][idx], cfg.crop_frames, rng)
        mask_(x, rng, cfg.time_masks, cfg.time_mask_fraction, cfg.freq_masks, cfg.freq_mask_mels)
        yield x, train["label"][idx]


class MemoryIngest:
    """The in-memory path in the worker: its windows read once (worker_data), crops cut from the arrays."""

    def __init__(self, cfg: TrainConfig, fcfg: FeatureConfig, rank: int, world: int):
        self.cfg, self.world = cfg, world
        self.train, self.val, self.test = worker_data(rank, world, fcfg, cfg.classes)

    def batches(self, rng: np.random.Generator):
        return memory_batches(self.train, self.cfg, rng, self.world)

    def windows(self, role: str):
        """This worker's `val` or `test` windows, in parts (here: one)."""
        yield self.val if role == "val" else self.test
