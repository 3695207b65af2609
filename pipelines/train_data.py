"""Training rows: from featurize's Parquet shards to the arrays a Ray Train worker trains on.

The driver reads the file table (labels, splits, sources) to plan the splits and hands Ray Train two Ray
Data datasets: `train` (split between the workers by streaming_split) and `eval` (val and test rows, every
worker reads all and keeps its part by hash). Each worker drains its part once into memory: uint8 magma
indices (~165 kB per 30 s window), labels, real frames and window keys.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model import FeatureConfig
from model.crops import real_frames
from pipelines import console, shards, storage
from pipelines.storage import S3Options

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


def datasets(shard_dirs: list[str], by_role: dict, seed: int, s3: S3Options | None = None,
             verbose: bool = False) -> dict:
    """Ray Train's datasets: `train` (the train files, shuffled) and `eval` (val and test files)."""
    import ray

    fs = storage.arrow_fs(shard_dirs[0], s3)
    base = console.quiet(ray.data.read_parquet([storage.arrow_path(d) for d in shard_dirs], filesystem=fs),
                         verbose).select_columns(ROW_COLUMNS)
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
