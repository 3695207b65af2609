"""One way to cut a file into analysis windows, for training (featurize) and inference (label) alike.

A file is streamed in blocks (never decoded whole: peak memory is a window plus a block, whatever the
file's length) and cut into windows of cfg.window_samples every hop. The last window is moved back to
end at the file's end (full length: no padding enters its min-max normalization); a file shorter than
one window is one window of its own length. `window_index` turns a window into the uint8 index the
network reads, padded with the colormap's floor (0) to the full window's frames when it is shorter, so
featurize and label give identical indices for the same audio (tested).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from model import FeatureConfig, featurize
from pipelines import storage
from pipelines.storage import AudioInfo, S3Options

STEP = 8  # Conv3DNet.time_stride of the seed's three blocks: one feature-map step = 8 spectrogram frames


class Window(NamedTuple):
    start: float            # seconds into the file
    samples: np.ndarray     # (T,) mono float32 at cfg.sample_rate: a full window, or a short file whole
    n: int                  # true samples (a very short file is padded up to the network's smallest input)
    seconds: float          # of the file decoded so far (its duration, on the last window)
    info: AudioInfo         # the file's own rate and channels


def min_samples(cfg: FeatureConfig) -> int:
    return (STEP - 1) * cfg.hop_length  # n_frames = 1 + n // hop >= 8: the network's smallest input


def band_limited_blocks(uri: str, block_seconds: float, sr: int, s3: S3Options | None, band_limit_hz: float = 0.0):
    """storage.iter_decoded_blocks at sr; with band_limit_hz > 0 (below sr / 2) decoded at twice that rate and
    resampled back up block by block (pipelines/augment.py's steep resampler: nothing is left above the limit)."""
    if not band_limit_hz or 2 * band_limit_hz >= sr:
        yield from storage.iter_decoded_blocks(uri, block_seconds, sr, s3)
        return
    from pipelines.augment import _resample

    low = int(round(2 * band_limit_hz))
    for start, block, info in storage.iter_decoded_blocks(uri, block_seconds, low, s3):
        yield start, _resample(block, low, sr), info


def iter_windows(uri: str, cfg: FeatureConfig, hop_seconds: float | None = None, s3: S3Options | None = None,
                 on_block=None):
    """Yield the Windows of a file every hop (default: the window, no overlap). on_block(block) sees
    every decoded block (e.g. a LevelTracker's feed: the signal's absolute level). cfg.band_limit_hz > 0:
    the audio as a recording of that bandwidth would give it (band_limited_blocks)."""
    W, sr = cfg.window_samples, cfg.sample_rate
    hop = max(1, int(round((hop_seconds or cfg.window_seconds) * sr)))
    buf, buf0, nxt, total, last_end, info = np.zeros(0, np.float32), 0, 0, 0, 0, None
    for _, block, info in band_limited_blocks(uri, max(1.0, min(cfg.window_seconds, 30.0)), sr, s3, cfg.band_limit_hz):
        if on_block is not None:
            on_block(block)
        buf = np.concatenate([buf, block])
        total += len(block)
        while nxt + W <= total:
            yield Window(nxt / sr, buf[nxt - buf0:nxt - buf0 + W], W, total / sr, info)
            last_end, nxt = nxt + W, nxt + hop
        keep = max(0, min(nxt, total - W))                          # keep the last window's worth
        buf, buf0 = buf[keep - buf0:], keep
    if last_end == 0:                                              # shorter than one window
        x = buf[:total]
        n = len(x)
        if n < min_samples(cfg):
            x = np.pad(x, (0, min_samples(cfg) - n))
        yield Window(0.0, x, n, total / sr, info)
    elif last_end < total:
        yield Window((total - W) / sr, buf[total - W - buf0:total - buf0], W, total / sr, info)


def window_index(samples: np.ndarray, cfg: FeatureConfig, frames: int | None = None) -> np.ndarray:
    """A window's samples -> uint8 index (n_mels, frames): featurized on the samples it holds, padded
    with 0 (the floor) up to `frames` when given (featurize stores every window at the full size)."""
    index = featurize(samples, cfg.sample_rate, cfg).numpy()
    if frames is None or index.shape[1] >= frames:
        return index[:, :frames] if frames else index
    return np.pad(index, ((0, 0), (0, frames - index.shape[1])))
