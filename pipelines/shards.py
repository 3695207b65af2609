"""The feature format: what featurize writes and train, the benchmarks and cluster sizing read.

    OUT/shards/<run>/*.parquet   one row per window (FEATURE_SCHEMA), FeatureConfig in the schema metadata
    OUT/errors.parquet           uri, error (ERROR_SCHEMA)
    OUT/feature_config.json      the FeatureConfig
    OUT/_SUCCESS.json            written last: the finished runs and the summary; readers take only its runs
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

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
