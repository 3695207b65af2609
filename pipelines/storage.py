"""All storage and decoding of the project: files, listings, manifests and Parquet, local or s3:// through
one fsspec layer (pipelines/filesystems.py: S3Options, get_fs, join, ..., re-exported here), plus the entry points of the audio decoder (pipelines/decoding.py: libsndfile, else FFmpeg via PyAV;
resampling and down-mixing), which reads the files it is handed as it decodes them.

S3 settings come from the usual AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION/AWS_DEFAULT_REGION, AWS_ENDPOINT_URL) or an explicit endpoint_url, which
jobs pass on to their Ray workers through `S3Options` so that every process reaches the same store.
"""

from __future__ import annotations

import io
import json
import os
import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import decoding
from pipelines.filesystems import (S3Options, absolute, arrow_fs, arrow_path, get_fs, is_s3,  # noqa: F401 (storage's API)
                                  join, strip_scheme)
from pipelines.decoding import AudioInfo, DecodeError, resample  # noqa: F401  (part of storage's API)
from pipelines.retry import PERMANENT, RetryingReader, retrying  # noqa: F401 (storage.retrying is the API)

AUDIO_EXTENSIONS = decoding.EXTENSIONS      # what the listers take unless told (--extensions)
EXTENSIONS_ARG = ",".join(e.lstrip(".") for e in AUDIO_EXTENSIONS)          # the jobs' --extensions default
EXTENSIONS_HELP = ("comma-separated file extensions listed under --input: 'mp4,wav' takes only those, '+ts,mts' "
                   "adds these to the default; any case. libsndfile decodes what it reads, FFmpeg the rest "
                   "(of a video, its first audio track)")
LABELS = ("music", "speech", "noise")   # what folder names and manifests may say
SPLITS = ("train", "test", "val")


class StorageError(Exception):
    """A location that cannot be used (missing folder, bad bucket, no credentials); names it."""


# ------------------------------------------------------------------------------------------------
# files and folders

def exists(uri: str, s3: S3Options | None = None) -> bool:
    return get_fs(uri, s3).exists(strip_scheme(uri))


def read_bytes(uri: str, s3: S3Options | None = None) -> bytes:
    def once():
        with get_fs(uri, s3).open(strip_scheme(uri), "rb") as f:
            return f.read()
    return retrying(once)


def write_bytes(uri: str, data: bytes, s3: S3Options | None = None) -> None:
    """Write a whole object; local files go through a temp name + rename so a crash leaves no half file."""
    fs = get_fs(uri, s3)
    path = strip_scheme(uri)
    if is_s3(uri):
        with fs.open(path, "wb") as f:
            f.write(data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def remove_temp_files(uri: str, s3: S3Options | None = None) -> None:
    """Remove the temp files write_bytes leaves in a local folder when the process dies mid-write (no
    reader takes them; a rerun clears them). S3 writes leave none."""
    if is_s3(uri) or not os.path.isdir(uri):
        return
    for name in os.listdir(uri):
        if ".tmp-" in name and os.path.isfile(os.path.join(uri, name)):
            os.remove(os.path.join(uri, name))


def read_json(uri: str, s3: S3Options | None = None) -> dict:
    return json.loads(read_bytes(uri, s3))


def write_json(uri: str, obj: dict, s3: S3Options | None = None) -> None:
    write_bytes(uri, json.dumps(obj, indent=2, sort_keys=True).encode(), s3)


def remove(uri: str, s3: S3Options | None = None, recursive: bool = True) -> None:
    fs = get_fs(uri, s3)
    if fs.exists(strip_scheme(uri)):
        fs.rm(strip_scheme(uri), recursive=recursive)


def check_input(uri: str, s3: S3Options | None = None) -> None:
    """Raise StorageError naming the location when it is missing or unreachable."""
    try:
        fs = get_fs(uri, s3)
        ok = fs.exists(strip_scheme(uri))
    except Exception as e:  # bad bucket, no credentials, endpoint down ...
        raise StorageError(f"cannot reach input {uri}: {type(e).__name__}: {e}") from e
    if not ok:
        raise StorageError(f"input {uri} does not exist")


def check_output(uri: str, s3: S3Options | None = None) -> None:
    """Raise StorageError naming the location when it cannot be written."""
    try:
        fs = get_fs(uri, s3)
        if is_s3(uri):
            bucket = strip_scheme(uri).split("/", 1)[0]
            if not fs.exists(bucket):
                raise StorageError(f"output bucket s3://{bucket} does not exist")
            probe = join(uri, ".write-probe")
            write_bytes(probe, b"", s3)
            remove(probe, s3)
        else:
            os.makedirs(uri, exist_ok=True)
            if not os.access(uri, os.W_OK):
                raise StorageError(f"output {uri} is not writable")
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(f"cannot write output {uri}: {type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------------------------------
# listing audio and labels

def label_and_split(uri: str) -> tuple[str | None, str | None]:
    """.../train/music/x.wav -> ("music", "train"); folders that are not labels/splits give None."""
    parts = strip_scheme(uri).replace("\\", "/").split("/")[:-1]
    label = parts[-1] if parts and parts[-1] in LABELS else None
    split = None
    if label is not None and len(parts) >= 2 and parts[-2] in SPLITS:
        split = parts[-2]
    elif label is None and parts and parts[-1] in SPLITS:
        split = parts[-1]
    return label, split


def parse_extensions(text: str) -> tuple[str, ...]:
    """`--extensions`: "mp4,wav" takes only those; "+ts,mts" adds them to the known ones
    (AUDIO_EXTENSIONS). Case and leading dots do not matter."""
    extra = text.strip().startswith("+")
    exts = tuple(dict.fromkeys("." + e.strip().lstrip("+").lstrip(".").lower()
                               for e in text.split(",") if e.strip().lstrip("+").lstrip(".")))
    if not exts:
        raise ValueError(f"no file extension in {text!r}")
    return tuple(dict.fromkeys(AUDIO_EXTENSIONS + exts)) if extra else exts


def list_audio(uri: str, s3: S3Options | None = None, extensions: tuple[str, ...] | None = None) -> list[str]:
    """All files below a folder/prefix (recursively) whose extension is one of `extensions` (default:
    AUDIO_EXTENSIONS, any case), or [uri] for a single file whatever its name; sorted URIs."""
    check_input(uri, s3)
    fs = get_fs(uri, s3)
    path = strip_scheme(uri)
    exts = tuple(e.lower() for e in (extensions or AUDIO_EXTENSIONS))
    if fs.isfile(path):
        files = [path]
    else:
        files = [p for p in fs.find(path) if p.lower().endswith(exts)]
    if is_s3(uri):
        return sorted("s3://" + p for p in files)
    return sorted(os.path.abspath(p) for p in files)


def read_manifest(uri: str, s3: S3Options | None = None) -> list[dict]:
    """CSV -> [{uri, label, split, source}]. With a header, the columns are found by name (`path` or
    `uri`, `label`, `split`, `source`; others are ignored); without one they are `path,label[,split]`.
    Relative paths are taken relative to the manifest's folder."""
    import csv

    check_input(uri, s3)
    text = read_bytes(uri, s3).decode("utf-8")
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    cols = {"path": 0, "label": 1, "split": 2, "source": None}
    if rows and rows[0][0].strip().lower() in ("path", "uri"):
        head = [c.strip().lower() for c in rows[0]]
        cols = {k: head.index(k) if k in head else None for k in ("label", "split", "source")}
        cols["path"] = 0
        rows = rows[1:]
    base = posixpath.dirname(uri) if is_s3(uri) else os.path.dirname(os.path.abspath(uri))

    def cell(r, k):
        i = cols[k]
        return r[i].strip() if i is not None and len(r) > i and r[i].strip() else None

    out = []
    for i, r in enumerate(rows):
        path = r[0].strip()
        if not (is_s3(path) or os.path.isabs(path)):
            path = join(base, path)
        label = cell(r, "label")
        if label is not None and label not in LABELS:
            raise ValueError(f"{uri} line {i + 1}: label {label!r} is not one of {LABELS}")
        out.append({"uri": path, "label": label, "split": cell(r, "split"), "source": cell(r, "source")})
    return out


# ------------------------------------------------------------------------------------------------
# decoding (pipelines/decoding.py decodes file objects; here they are opened, local or s3://)

def _open_audio(uri: str, s3: S3Options | None) -> RetryingReader:
    """The file, its reads retrying transient errors (missing or forbidden files are DecodeErrors; a
    transient error that outlasts the retries propagates: the job fails rather than calling it bad audio)."""
    fs = get_fs(uri, s3)
    try:
        return RetryingReader(retrying(lambda: fs.open(strip_scheme(uri), "rb")))
    except FileNotFoundError as e:
        raise DecodeError(f"{uri}: no such file") from e
    except PERMANENT as e:
        raise DecodeError(f"{uri}: unreadable ({type(e).__name__}: {e})") from e


def decode_bytes(data: bytes, name: str, target_sr: int = 22050) -> tuple[np.ndarray, AudioInfo]:
    """Encoded audio or media in memory -> (mono float32 (T,) at target_sr, info); DecodeError names `name`."""
    return decoding.decode_stream(io.BytesIO(data), name, target_sr)


def decode(uri: str, target_sr: int = 22050, s3: S3Options | None = None) -> tuple[np.ndarray, AudioInfo]:
    """The one whole-file decoding function: a local path or s3:// URI of audio or video (its first audio
    track) -> (mono float32 (T,) at target_sr, info). The file is read as it decodes (a video's frames are
    never decoded, nor the file loaded whole); only the decoded mono audio is held. Raises DecodeError
    naming the file for missing, empty, truncated, non-audio or audio-less input."""
    with _open_audio(uri, s3) as f:
        try:
            out = decoding.decode_stream(f, uri, target_sr)
        except DecodeError:
            f.raise_error()                                  # a read that failed for good, not a broken file
            raise
        f.raise_error()
        return out


def iter_decoded_blocks(uri: str, block_seconds: float, target_sr: int = 22050, s3: S3Options | None = None):
    """Stream a file of any length and format: yield (start_seconds, mono float32 block at target_sr, info)
    for consecutive blocks of block_seconds (the last one shorter), never holding the whole file decoded.
    Blocks concatenate to decode()'s samples (up to the resampler's float rounding). For files that FFmpeg
    decodes, info.frames is estimated from the stated duration (decode() gives the exact count)."""
    with _open_audio(uri, s3) as f:
        try:
            for block in decoding.iter_blocks(f, uri, block_seconds, target_sr):
                f.raise_error()
                yield block
        except DecodeError:
            f.raise_error()
            raise
        f.raise_error()


# ------------------------------------------------------------------------------------------------
# Parquet helpers shared by the jobs

def write_table(uri: str, table: pa.Table, s3: S3Options | None = None) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    write_bytes(uri, buf.getvalue(), s3)


def read_table(uri: str, s3: S3Options | None = None, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file or a folder/prefix of them, read with plain pyarrow."""
    fs = get_fs(uri, s3)
    path = strip_scheme(uri)
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
        if not files:
            return pa.table({})
        tables = []
        for p in files:
            with fs.open(p, "rb") as f:
                tables.append(pq.read_table(f, columns=columns))
        return pa.concat_tables(tables, promote_options="default")
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)
