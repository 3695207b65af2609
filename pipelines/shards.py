"""The feature format: what featurize writes and train, the benchmarks and cluster sizing read.

    OUT/shards/<run>/*.parquet   one row per window (FEATURE_SCHEMA), FeatureConfig in the schema metadata
    OUT/errors.parquet           uri, error (ERROR_SCHEMA)
    OUT/feature_config.json      the FeatureConfig
    OUT/_SUCCESS.json            written last: the finished runs and the summary; readers take only its runs
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model import FeatureConfig
from pipelines import storage
from pipelines.storage import S3Options

FEATURE_SCHEMA = pa.schema([
    ("uri", pa.string()),               # source file
    ("window_start", pa.float64()),     # seconds into the file
    ("window_duration", pa.float64()),  # true seconds of audio in the window (the last one is zero-padded)
    ("label", pa.string()),             # music | speech | noise | null
    ("split", pa.string()),             # train | test | val | null
    ("source", pa.string()),            # the group validation holds out whole (manifest column or input name)
    ("augment", pa.string()),           # "" for the file as it is, else the archive condition applied to it
    ("sample_rate", pa.int32()),        # the file's own rate and channel count, before resampling/down-mix
    ("channels", pa.int32()),
    ("n_mels", pa.int32()),
    ("n_frames", pa.int32()),
    ("index", pa.binary()),             # uint8 magma index, row-major (n_mels, n_frames)
])
ERROR_SCHEMA = pa.schema([("uri", pa.string()), ("error", pa.string())])


def index_of(row: dict) -> np.ndarray:
    """A shard row -> its uint8 index (n_mels, n_frames); model.expand() turns it into the dense tensor."""
    return np.frombuffer(row["index"], np.uint8).reshape(row["n_mels"], row["n_frames"])


def marker_uri(out: str) -> str:
    return storage.join(out, "_SUCCESS.json")


def finished_shards(out: str, s3: S3Options | None = None) -> tuple[list[str], FeatureConfig]:
    """The shard folders of a finished featurize output and its FeatureConfig; raises if unfinished."""
    if not storage.exists(marker_uri(out), s3):
        raise storage.StorageError(f"{out} holds no finished featurize output (no _SUCCESS.json)")
    done = storage.read_json(marker_uri(out), s3)
    return [storage.join(out, "shards", r) for r in done["runs"]], FeatureConfig.from_dict(done["feature_config"])


def read_rows(out: str, s3: S3Options | None = None, columns: list[str] | None = None) -> pa.Table:
    """All rows of a finished output with plain pyarrow (no Ray)."""
    dirs, _ = finished_shards(out, s3)
    tables = [storage.read_table(d, s3, columns) for d in dirs]
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else FEATURE_SCHEMA.empty_table().select(columns or FEATURE_SCHEMA.names)


def clear_unfinished(out: str, keep_runs: list[str], s3: S3Options | None) -> None:
    """Remove shard folders of runs that never finished (not in _SUCCESS.json), per-run error parts (a
    finished run's errors are in errors.parquet) and the temp files of a write a crash interrupted."""
    shards_dir = storage.join(out, "shards")
    if storage.exists(shards_dir, s3):
        for d in storage.get_fs(shards_dir, s3).ls(storage.strip_scheme(shards_dir), detail=False):
            if d.rstrip("/").rsplit("/", 1)[-1] not in keep_runs:
                storage.remove(("s3://" + d) if storage.is_s3(out) else d, s3)
    storage.remove(storage.join(out, "errors"), s3)
    storage.remove_temp_files(out, s3)


def audio_seconds(rows: pa.Table) -> float:
    """Seconds of audio of the files as they are: per file, the end of its last window (a file's last
    window may overlap the one before it, so durations do not add up)."""
    clean = rows.filter(pc.equal(rows.column("augment"), ""))
    if clean.num_rows == 0:
        return 0.0
    ends = clean.append_column("end", pc.add(clean.column("window_start"), clean.column("window_duration")))
    return float(pc.sum(ends.group_by("uri").aggregate([("end", "max")]).column("end_max")).as_py() or 0.0)


def totals(out: str, runs: list[str], s3: S3Options | None) -> dict:
    """files, windows and audio hours (of the files as they are) over all the finished runs."""
    cols = ["uri", "window_start", "window_duration", "augment"]
    t = [storage.read_table(storage.join(out, "shards", r), s3, cols) for r in runs]
    t = pa.concat_tables([x for x in t if x.num_rows]) if any(x.num_rows for x in t) else None
    if t is None:
        return {"files": 0, "windows": 0, "audio_hours": 0.0}
    return {"files": len(set(t.column("uri").to_pylist())), "windows": t.num_rows, "audio_hours": audio_seconds(t) / 3600}
