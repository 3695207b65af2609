"""Audio decoding for the whole project, streamed: libsndfile (soundfile) where it reads the file (WAV,
FLAC, Ogg Vorbis/Opus, MP3, ...), FFmpeg through PyAV for the rest (the first audio track of MP4, MKV,
WebM, AVI, MOV; M4A/AAC, WMA, AMR, ...). PyAV's wheels bundle FFmpeg's libraries: no system ffmpeg.

Either library becomes a *source* that hands out mono float32 frames at the file's own rate, in order;
one block resampler turns any source into blocks at the target rate, and whole-file decoding is the
same source read to its end. Codec delay, measured with PyAV 18.1 on files PyAV made (lag of the decoded
signal against its source): 0 for AAC in MP4/M4A/MOV/MKV (edit lists, Matroska's codec delay) and Opus
(pre-skip); +1024 source frames for raw ADTS .aac (no container to state the priming), +~25 ms for MP3 in
AVI, -1024 frames (starts early) for WMA. AAC's padding to whole 1024-frame packets stays at the end.
Nothing here opens a path: storage.py opens local or s3:// files and
passes file objects (which is also why both libraries read S3 without a download).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

# what the listers take by default: libsndfile's usual formats, then FFmpeg's common audio and video
# containers (only their first audio track is decoded)
EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff",
              ".opus", ".m4a", ".m4b", ".aac", ".wma", ".amr", ".mka", ".ac3",
              ".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".3gp")

HEAD_BYTES = 1 << 16
READ_FRAMES = 1 << 20      # frames per read when a whole file is decoded


class DecodeError(Exception):
    """A file that is not decodable audio; the message names the file."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int       # the file's own rate
    channels: int
    frames: int            # at the file's own rate (for FFmpeg streams while streaming: estimated, see _AvSource)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """(..., T) float32 -> (..., T') at target_sr (torchaudio's windowed-sinc resampler)."""
    if orig_sr == target_sr:
        return x
    import torch
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(x)), orig_sr, target_sr).numpy()


def check_wav_truncation(read_at, size: int, name: str) -> None:
    """libsndfile silently reads what is there of a WAV cut short: raise DecodeError when a WAV/RF64's
    data chunk declares more bytes than the file holds. read_at(pos, n) returns n bytes at pos (fewer at
    the end): only the chunk headers are read, so files of any size (RF64: the size from its ds64 chunk)."""
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


# ------------------------------------------------------------------------------------------------
# sources: read(n) -> the next (at most n; fewer only at the end) mono float32 frames at the file's rate

class _SndfileSource:
    def __init__(self, f):
        self.f = f
        self.info = AudioInfo(f.samplerate, f.channels, f.frames)

    def read(self, n: int) -> np.ndarray:
        x = self.f.read(n, dtype="float32", always_2d=True)                 # (n, channels)
        return x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]                 # down-mix: the channel mean

    def close(self) -> None:
        self.f.close()


_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2.0 ** 31, "s64": 2.0 ** 63}


def _frame_mono(frame) -> np.ndarray:
    """A PyAV AudioFrame of any sample format -> mono float32 (the channel mean, as for libsndfile)."""
    a = frame.to_ndarray()
    ch = len(frame.layout.channels)
    if not frame.format.is_planar:                                           # packed: (1, n * ch)
        a = a.reshape(-1, ch).T
    kind = frame.format.name.rstrip("p")
    if kind in _INT_SCALE:
        a = (a.astype(np.float32) - (128.0 if kind == "u8" else 0.0)) / np.float32(_INT_SCALE[kind])
    a = a.astype(np.float32, copy=False)
    return a.mean(axis=0) if ch > 1 else a[0]


class _AvSource:
    """The first audio stream of anything FFmpeg opens, decoded frame by frame (video packets are
    demuxed past, never decoded). info.frames is estimated from the stream's (else the container's)
    duration, 0 when neither states one; decode_stream replaces it with the count actually decoded."""

    def __init__(self, container, name: str):
        self.container, self.name = container, name
        st = container.streams.audio[0]
        sr = st.codec_context.sample_rate or st.rate
        if st.duration and st.time_base:
            frames = round(float(st.duration * st.time_base) * sr)
        else:
            frames = round(container.duration / 1e6 * sr) if container.duration else 0
        self.info = AudioInfo(sr, st.codec_context.channels, frames)
        self._frames = container.decode(st)
        self._buf, self._have, self._done, self._pos = [], 0, False, 0

    def _pull(self) -> None:
        import av

        try:
            frame = next(self._frames)
        except StopIteration:
            self._done = True
            return
        except av.FFmpegError as e:
            raise DecodeError(f"{self.name}: decoding failed at {self._pos / self.info.sample_rate:.1f} s "
                              f"({type(e).__name__}: {e})") from e
        if frame.sample_rate != self.info.sample_rate:
            raise DecodeError(f"{self.name}: sample rate changes from {self.info.sample_rate} to "
                              f"{frame.sample_rate} Hz at {self._pos / self.info.sample_rate:.1f} s")
        m = _frame_mono(frame)
        self._buf.append(m)
        self._have += len(m)

    def read(self, n: int) -> np.ndarray:
        while self._have < n and not self._done:
            self._pull()
        x = np.concatenate(self._buf) if self._buf else np.zeros(0, np.float32)
        out, rest = x[:n], x[n:]
        self._buf, self._have = ([rest] if len(rest) else []), len(rest)
        self._pos += len(out)
        return out

    def close(self) -> None:
        self.container.close()


class _Opened:
    def __init__(self, src):
        self.src = src

    def __enter__(self):
        return self.src

    def __exit__(self, *exc):
        self.src.close()


def open_source(fobj, name: str) -> _Opened:
    """A seekable binary file object -> a source (context manager); libsndfile first, then FFmpeg.
    Raises DecodeError naming `name` for empty, truncated-WAV, non-audio or audio-less input."""
    import soundfile as sf

    head = fobj.read(HEAD_BYTES)
    if len(head) == 0:
        raise DecodeError(f"{name}: empty file (0 bytes)")
    size = fobj.seek(0, 2)

    def read_at(pos, n):                                   # chunk headers past the head: one seek each
        if pos + n <= len(head):
            return head[pos:pos + n]
        fobj.seek(pos)
        return fobj.read(n)

    check_wav_truncation(read_at, size, name)
    fobj.seek(0)
    try:
        return _Opened(_SndfileSource(sf.SoundFile(fobj)))
    except Exception as e:
        sf_error = f"libsndfile: {getattr(e, 'error_string', None) or f'{type(e).__name__}: {e}'}"
    import av

    fobj.seek(0)
    try:
        container = av.open(fobj, "r")
    except Exception as e:
        raise DecodeError(f"{name}: not decodable audio ({sf_error}; FFmpeg: {type(e).__name__}: {e})") from e
    if not container.streams.audio:
        kinds = ", ".join(f"{s.type} {getattr(s.codec_context, 'name', '?')}" for s in container.streams) or "no streams"
        container.close()
        raise DecodeError(f"{name}: no audio stream ({container.format.name} holding {kinds})")
    try:
        return _Opened(_AvSource(container, name))
    except Exception as e:
        container.close()
        raise DecodeError(f"{name}: unusable audio stream ({type(e).__name__}: {e})") from e


# ------------------------------------------------------------------------------------------------
# whole files and blocks

def decode_stream(fobj, name: str, target_sr: int = 22050) -> tuple[np.ndarray, AudioInfo]:
    """A file object -> (mono float32 (T,) at target_sr, info with the frames actually decoded)."""
    with open_source(fobj, name) as src:
        parts = []
        while True:
            x = _read(src, READ_FRAMES, name, sum(map(len, parts)), src.info.sample_rate)
            parts.append(x)
            if len(x) < READ_FRAMES:
                break
        info = src.info
    x = np.concatenate(parts)
    if len(x) == 0:
        raise DecodeError(f"{name}: holds no audio samples")
    if not np.isfinite(x).all():
        raise DecodeError(f"{name}: audio holds NaN or infinite samples")
    info = AudioInfo(info.sample_rate, info.channels, len(x))
    return resample(x, info.sample_rate, target_sr).astype(np.float32, copy=False), info


def iter_blocks(fobj, name: str, block_seconds: float, target_sr: int = 22050):
    """Yield (start_seconds, mono float32 block at target_sr, info) for consecutive blocks of
    block_seconds (the last one shorter), holding one block plus context at a time."""
    with open_source(fobj, name) as src:
        yield from resampled_blocks(src, name, block_seconds, target_sr)


def resampled_blocks(src, name: str, block_seconds: float, target_sr: int):
    """Each block is resampled with a little context on both sides, so block edges carry no artefacts.
    Block starts and context stay on the resampler's grid (multiples of sr / gcd(sr, target_sr)), so every
    block's output samples fall exactly where the whole file's would."""
    sr, info = src.info.sample_rate, src.info
    step = sr // math.gcd(sr, target_sr)
    block = max(1, int(round(block_seconds * sr / step))) * step
    ctx = 0 if sr == target_sr else -(-max(64, sr // 20) // step) * step    # >= 50 ms of context
    start = 0                                                  # in source frames
    left = np.zeros(0, np.float32)                             # up to ctx frames before start
    ahead = _read(src, block + ctx, name, start, sr)           # frames from start on
    while True:
        n = min(block, len(ahead))                             # new frames in this block
        if n <= 0:
            break
        if ctx:
            y = resample(np.concatenate([left, ahead]), sr, target_sr)
            lead = int(round(len(left) * target_sr / sr))
            # ceil, as the resampler does for the whole file: the blocks add up to it exactly
            keep = -(-(start + n) * target_sr // sr) - start * target_sr // sr
            y = y[lead:lead + keep]
        else:
            y = ahead[:n]
        if not np.isfinite(y).all():
            raise DecodeError(f"{name}: audio holds NaN or infinite samples")
        yield start / sr, np.ascontiguousarray(y, dtype=np.float32), info
        if n < block:
            start += n
            break
        left = np.concatenate([left, ahead[:n]])[-ctx:] if ctx else left
        ahead = np.concatenate([ahead[n:], _read(src, block, name, start + len(ahead), sr)])
        start += n
    if start == 0:
        raise DecodeError(f"{name}: holds no audio samples")


def _read(src, n: int, name: str, at: int, sr: int) -> np.ndarray:
    try:
        return src.read(n)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"{name}: decoding failed at {at / sr:.1f} s ({type(e).__name__}: {e})") from e
