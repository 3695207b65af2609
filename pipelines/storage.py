"""All storage and decoding of the project: one fsspec layer so that local paths and s3:// URIs share
code, plus the one audio decoder (soundfile) with resampling and down-mixing.

S3 settings come from the usual AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION/AWS_DEFAULT_REGION, AWS_ENDPOINT_URL) or an explicit endpoint_url, which
jobs pass on to their Ray workers through `S3Options` so that every process reaches the same store.
"""

from __future__ import annotations

import io
import json
import math
import os
import posixpath
import struct
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.retry import PERMANENT, RetryingReader, retrying  # noqa: F401 (storage.retrying is the API)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
LABELS = ("music", "speech")
SPLITS = ("train", "test", "val")


class DecodeError(Exception):
    """A file that is not decodable audio; the message names the file."""


class StorageError(Exception):
    """A location that cannot be used (missing folder, bad bucket, no credentials); names it."""


# ------------------------------------------------------------------------------------------------
# filesystems

@dataclass(frozen=True)
class S3Options:
    """What a worker process needs to reach the same S3 store as the driver (plain data: picklable)."""
    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    token: str | None = None
    region: str | None = None

    def __repr__(self) -> str:
        # it travels in Ray task arguments and train_loop_config, which Ray may print or log: never show
        # the secret or the token, and only the last 4 characters of the key
        def mask(v, tail=0):
            return None if v is None else "***" + (v[-tail:] if tail and len(v) > 2 * tail else "")
        return (f"S3Options(endpoint_url={self.endpoint_url!r}, key={mask(self.key, 4)!r}, "
                f"secret={mask(self.secret)!r}, token={mask(self.token)!r}, region={self.region!r})")

    @classmethod
    def from_env(cls, endpoint_url: str | None = None) -> "S3Options":
        e = os.environ.get
        return cls(endpoint_url=endpoint_url or e("AWS_ENDPOINT_URL_S3") or e("AWS_ENDPOINT_URL"),
                   key=e("AWS_ACCESS_KEY_ID"), secret=e("AWS_SECRET_ACCESS_KEY"), token=e("AWS_SESSION_TOKEN"),
                   region=e("AWS_REGION") or e("AWS_DEFAULT_REGION"))


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def strip_scheme(uri: str) -> str:
    return uri[len("s3://"):] if is_s3(uri) else uri


def get_fs(uri: str, s3: S3Options | None = None) -> fsspec.AbstractFileSystem:
    if is_s3(uri):
        s3 = s3 or S3Options.from_env()
        client_kwargs = {}
        if s3.endpoint_url:
            client_kwargs["endpoint_url"] = s3.endpoint_url
        if s3.region:
            client_kwargs["region_name"] = s3.region
        # skip_instance_cache: settings may differ between calls in one process (tests, workers)
        return fsspec.filesystem("s3", key=s3.key, secret=s3.secret, token=s3.token,
                                 client_kwargs=client_kwargs, skip_instance_cache=True)
    return fsspec.filesystem("file")


def arrow_fs(uri: str, s3: S3Options | None = None) -> pafs.FileSystem:
    """A pyarrow filesystem for Ray's read_*/write_* (pyarrow's own S3FileSystem ignores
    AWS_ENDPOINT_URL, so wrap the same fsspec filesystem instead)."""
    if is_s3(uri):
        return pafs.PyFileSystem(pafs.FSSpecHandler(get_fs(uri, s3)))
    return pafs.LocalFileSystem()


def arrow_path(uri: str) -> str:
    """The path to hand to a filesystem from arrow_fs() (absolute for local paths)."""
    return strip_scheme(uri) if is_s3(uri) else os.path.abspath(uri)


def join(uri: str, *parts: str) -> str:
    if is_s3(uri):
        return "s3://" + posixpath.join(strip_scheme(uri).rstrip("/"), *parts)
    return os.path.join(uri, *parts)


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


def list_audio(uri: str, s3: S3Options | None = None) -> list[str]:
    """All audio files below a folder/prefix (recursively), or [uri] for a single file; sorted URIs."""
    check_input(uri, s3)
    fs = get_fs(uri, s3)
    path = strip_scheme(uri)
    if fs.isfile(path):
        files = [path]
    else:
        files = [p for p in fs.find(path) if p.lower().endswith(AUDIO_EXTENSIONS)]
    if is_s3(uri):
        return sorted("s3://" + p for p in files)
    return sorted(os.path.abspath(p) for p in files)


def read_manifest(uri: str, s3: S3Options | None = None) -> list[dict]:
    """CSV `path,label[,split]` (header optional) -> [{uri, label, split}]; relative paths are taken
    relative to the manifest's folder."""
    import csv

    check_input(uri, s3)
    text = read_bytes(uri, s3).decode("utf-8")
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if rows and rows[0][0].strip().lower() in ("path", "uri"):
        rows = rows[1:]
    base = posixpath.dirname(uri) if is_s3(uri) else os.path.dirname(os.path.abspath(uri))
    out = []
    for i, r in enumerate(rows):
        path = r[0].strip()
        if not (is_s3(path) or os.path.isabs(path)):
            path = join(base, path)
        label = r[1].strip() if len(r) > 1 and r[1].strip() else None
        split = r[2].strip() if len(r) > 2 and r[2].strip() else None
        if label is not None and label not in LABELS:
            raise ValueError(f"{uri} line {i + 1}: label {label!r} is not one of {LABELS}")
        out.append({"uri": path, "label": label, "split": split})
    return out


# ------------------------------------------------------------------------------------------------
# decoding

def _check_wav_truncation(data: bytes, name: str) -> None:
    """libsndfile silently reads what is there of a WAV cut short; compare with the header instead."""
    _check_wav_size(lambda pos, n: data[pos:pos + n], len(data), name)


def _check_wav_size(read_at, size: int, name: str) -> None:
    """Raise DecodeError when a WAV/RF64's data chunk declares more bytes than the file holds. read_at(pos,
    n) returns n bytes at pos (fewer at the end): only the chunk headers are read, so files of any size."""
    head = read_at(0, 12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return
    pos, ds64 = 12, None
    while pos + 8 <= size:
        chunk = read_at(pos, 8)
        if len(chunk) < 8:
            return
        cid, n = chunk[:4], struct.unpack("<I", chunk[4:8])[0]
        if cid == b"ds64":                                  # RF64: the 64-bit sizes live here
            body = read_at(pos + 8, 16)
            ds64 = struct.unpack("<Q", body[8:16])[0] if len(body) == 16 else None
        if cid == b"data":
            declared = ds64 if n == 0xFFFFFFFF and ds64 is not None else n
            have = size - pos - 8
            if (declared < 0xFFFFFF00 or ds64 is not None) and declared > have:  # 0xFFFFFFFF: size unknown
                raise DecodeError(f"{name}: truncated WAV: header declares {declared} bytes of audio, file holds {have}")
            return
        pos += 8 + n + (n & 1)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """(..., T) float32 -> (..., T') at target_sr (torchaudio's windowed-sinc resampler)."""
    if orig_sr == target_sr:
        return x
    import torch
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(x)), orig_sr, target_sr).numpy()


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int       # the file's own rate
    channels: int
    frames: int            # at the file's own rate

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def decode_bytes(data: bytes, name: str, target_sr: int = 22050) -> tuple[np.ndarray, AudioInfo]:
    """Encoded audio (WAV/FLAC/OGG/MP3, any rate, any channels) -> (mono float32 (T,) at target_sr, info).
    Raises DecodeError naming `name` for empty, truncated, non-audio or unreadable input."""
    import soundfile as sf

    if len(data) == 0:
        raise DecodeError(f"{name}: empty file (0 bytes)")
    _check_wav_truncation(data, name)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            info = AudioInfo(f.samplerate, f.channels, f.frames)
            x = f.read(dtype="float32", always_2d=True)          # (T, channels)
    except Exception as e:
        raise DecodeError(f"{name}: not decodable audio ({type(e).__name__}: {e})") from e
    if x.shape[0] == 0:
        raise DecodeError(f"{name}: holds no audio samples")
    if not np.isfinite(x).all():
        raise DecodeError(f"{name}: audio holds NaN or infinite samples")
    info = AudioInfo(info.sample_rate, info.channels, x.shape[0])
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]         # down-mix (T,)
    return resample(mono, info.sample_rate, target_sr).astype(np.float32, copy=False), info


def decode(uri: str, target_sr: int = 22050, s3: S3Options | None = None) -> tuple[np.ndarray, AudioInfo]:
    """The one decoding function: a local path or s3:// URI -> (mono float32 (T,) at target_sr, info)."""
    try:
        data = read_bytes(uri, s3)                       # transient errors retried, then they propagate
    except FileNotFoundError as e:
        raise DecodeError(f"{uri}: no such file") from e
    except PERMANENT as e:
        raise DecodeError(f"{uri}: unreadable ({type(e).__name__}: {e})") from e
    return decode_bytes(data, uri, target_sr)


def iter_decoded_blocks(uri: str, block_seconds: float, target_sr: int = 22050, s3: S3Options | None = None):
    """Stream a file of any length: yield (start_seconds, mono float32 block at target_sr, info) for
    consecutive blocks of block_seconds (the last one shorter), never holding the whole file decoded.
    Each block is resampled with a little context on both sides, so block edges carry no artefacts."""
    import soundfile as sf

    fs = get_fs(uri, s3)
    try:
        raw = retrying(lambda: fs.open(strip_scheme(uri), "rb"))  # transient errors retried, then propagate
    except FileNotFoundError as e:
        raise DecodeError(f"{uri}: no such file") from e
    except PERMANENT as e:
        raise DecodeError(f"{uri}: unreadable ({type(e).__name__}: {e})") from e
    with raw:
        fobj = RetryingReader(raw)
        head = fobj.read(1 << 16)
        if len(head) == 0:
            raise DecodeError(f"{uri}: empty file (0 bytes)")
        size = retrying(lambda: fs.size(strip_scheme(uri)))

        def read_at(pos, n):  # chunk headers beyond the first 64 KiB are read with a seek
            if pos + n <= len(head):
                return head[pos:pos + n]
            fobj.seek(pos)
            return fobj.read(n)

        _check_wav_size(read_at, size, uri)
        fobj.seek(0)
        try:
            f = sf.SoundFile(fobj)
        except Exception as e:
            if fobj.error is not None:
                raise fobj.error
            raise DecodeError(f"{uri}: not decodable audio ({type(e).__name__}: {e})") from e
        with f:
            sr, ch = f.samplerate, f.channels
            info = AudioInfo(sr, ch, f.frames)
            # Block starts and context stay on the resampler's grid (multiples of sr / gcd(sr, target_sr))
            # so every block's output samples fall exactly where the whole file's would.
            step = sr // math.gcd(sr, target_sr)
            block = max(1, int(round(block_seconds * sr / step))) * step
            ctx = 0 if sr == target_sr else -(-max(64, sr // 20) // step) * step  # >= 50 ms of context
            start = 0                                              # in source frames
            while True:
                a = max(0, start - ctx)
                try:
                    f.seek(a)
                    x = f.read(block + ctx + (start - a), dtype="float32", always_2d=True)
                except Exception as e:
                    if fobj.error is not None:
                        raise fobj.error
                    raise DecodeError(f"{uri}: decoding failed at {start / sr:.1f} s ({type(e).__name__}: {e})") from e
                if fobj.error is not None:                         # a read that failed for good, not the file's end
                    raise fobj.error
                n = min(block, x.shape[0] - (start - a))           # new frames in this block
                if n <= 0:
                    break
                mono = x.mean(axis=1) if ch > 1 else x[:, 0]
                if ctx:
                    y = resample(mono, sr, target_sr)
                    lead = int(round((start - a) * target_sr / sr))
                    # ceil, as the resampler does for the whole file: the blocks add up to it exactly
                    keep = -(-(start + n) * target_sr // sr) - start * target_sr // sr
                    y = y[lead:lead + keep]
                else:
                    y = mono[start - a:start - a + n]
                if not np.isfinite(y).all():
                    raise DecodeError(f"{uri}: audio holds NaN or infinite samples")
                yield start / sr, np.ascontiguousarray(y, dtype=np.float32), info
                start += n
                if n < block:
                    break
            if start == 0:
                raise DecodeError(f"{uri}: holds no audio samples")


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
