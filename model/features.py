"""The seed's representation, exact and compact.

    waveform -> mel power spectrogram -> dB (ref = window max, 80 dB floor) -> min-max [0, 1]
             -> magma colormap index (uint8)            <- what featurize() returns and Parquet stores
             -> RGBA in one of 10 luminance-bin layers  <- what expand() rebuilds on the device

matplotlib's magma is a 256-entry table and cmap(x) == table[clip(int(x * 256), 0, 255)] with alpha 1,
so the seed's whole (10, n_mels, frames, 4) float tensor is an exact function of one uint8 index per
pixel. featurize() is a pure function (samples, sample_rate, config) -> index; storage lives elsewhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

from ._magma import MAGMA_RGB

LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    window_seconds: float = 30.0
    colormap: str = "magma"
    n_bins: int = 10
    top_db: float = 80.0
    band_limit_hz: float = 0.0     # > 0: the audio is band-limited to this before the features (pipelines/windows.py)

    def __post_init__(self):
        if self.band_limit_hz < 0 or 0 < self.band_limit_hz < 1000:
            raise ValueError(f"band_limit_hz must be 0 (off) or >= 1000 Hz, got {self.band_limit_hz}")
        if self.colormap != "magma":
            raise ValueError(f"colormap {self.colormap!r} is not supported (only 'magma' is embedded)")
        if self.n_bins < 1 or self.n_mels < 1 or self.hop_length < 1 or self.n_fft < 2:
            raise ValueError(f"invalid feature config: {self}")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    def n_frames(self, n_samples: int | None = None) -> int:
        """Frames of a centred STFT over n_samples (default: one window): 30 s -> 1292."""
        n = self.window_samples if n_samples is None else n_samples
        return 1 + n // self.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown FeatureConfig keys: {sorted(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# the mel front end: torchaudio with librosa's defaults, one module per (config, device)

_CACHE: dict = {}


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def mel_transform(cfg: FeatureConfig, device="cpu") -> torch.nn.Module:
    """torchaudio MelSpectrogram set to librosa.feature.melspectrogram's defaults: centred frames with
    zero padding, periodic Hann window, power 2, Slaney mel scale and Slaney (area) norm."""
    def make():
        return torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
            f_min=0.0, f_max=cfg.sample_rate / 2, power=2.0, center=True, pad_mode="constant",
            norm="slaney", mel_scale="slaney", window_fn=torch.hann_window,
        ).to(device)
    return _cached(("mel", cfg, str(device)), make)


# ---------------------------------------------------------------------------------------------
# the transform

def normalized_spectrogram(samples: torch.Tensor | np.ndarray, cfg: FeatureConfig) -> torch.Tensor:
    """Waveform (B, T) or (T,) at cfg.sample_rate -> float32 (B, n_mels, frames) in [0, 1].

    mel power spectrogram (centred frames, zero padding, periodic Hann, power 2, Slaney mel + norm)
    -> 10*log10(max(S, 1e-10)) relative to the window's maximum, floored at -top_db -> min-max [0, 1].
    A window with no dynamic range (digital silence) maps to all zeros.
    """
    x = torch.as_tensor(samples, dtype=torch.float32)
    squeeze = x.dim() == 1
    if squeeze:
        x = x[None]
    if x.dim() != 2:
        raise ValueError(f"samples must be (T,) or (B, T), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise ValueError("samples are empty")
    mel = mel_transform(cfg, x.device)(x)                         # (B, n_mels, frames)
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    db = db - db.amax(dim=(-2, -1), keepdim=True)                 # ref = window max -> max is 0 dB
    db = db.clamp_min(-cfg.top_db)
    lo = db.amin(dim=(-2, -1), keepdim=True)
    rng = db.amax(dim=(-2, -1), keepdim=True) - lo
    norm = torch.where(rng > 0, (db - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(db))
    return norm[0] if squeeze else norm


def colormap_index(norm: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 colormap index clip(int(x * 256), 0, 255), exactly as matplotlib's cmap(x)."""
    return torch.clamp(torch.floor(norm * 256.0), 0, 255).to(torch.uint8)


def featurize(samples: torch.Tensor | np.ndarray, sample_rate: int, cfg: FeatureConfig) -> torch.Tensor:
    """Waveform (B, T) or (T,) -> uint8 colormap index (B, n_mels, frames) or (n_mels, frames).

    The waveform must already be mono at cfg.sample_rate (decoding and resampling live in
    pipelines/storage.py); T = cfg.window_samples gives the seed's (128, 1292).
    """
    if sample_rate != cfg.sample_rate:
        raise ValueError(f"samples are at {sample_rate} Hz but the feature config expects {cfg.sample_rate} Hz")
    return colormap_index(normalized_spectrogram(samples, cfg))


# ---------------------------------------------------------------------------------------------
# expansion: uint8 index -> the seed's dense tensor

def colormap_rgba() -> np.ndarray:
    """(256, 4) float64 RGBA of the magma table."""
    rgb = np.asarray(MAGMA_RGB, dtype=np.float64)
    return np.concatenate([rgb, np.ones((256, 1))], axis=1)


def luminance_bins(n_bins: int) -> np.ndarray:
    """(256,) int: the layer of each colormap entry, by luminance in bins linspace(0, 1, n_bins+1),
    each bin [e_i, e_i+1) and the last one closed."""
    rgba = colormap_rgba()
    lum = rgba[:, :3] @ np.asarray(LUMA)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    layer = np.full(256, -1)
    for i in range(n_bins):
        hi = (lum <= edges[i + 1]) if i == n_bins - 1 else (lum < edges[i + 1])
        layer[(lum >= edges[i]) & hi] = i
    assert (layer >= 0).all(), "every colormap entry has a luminance in [0, 1]"
    return layer


def expansion_table(n_bins: int = 10) -> np.ndarray:
    """(256, 4 * n_bins) float32: row k is the flattened (4, n_bins) dense pixel of index k."""
    rgba, layer = colormap_rgba(), luminance_bins(n_bins)
    table = np.zeros((256, 4, n_bins), dtype=np.float32)
    table[np.arange(256), :, layer] = rgba.astype(np.float32)
    return table.reshape(256, 4 * n_bins)


def expand(index: torch.Tensor, n_bins: int = 10, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 index (B, n_mels, frames) -> dense (B, 4, n_bins, n_mels, frames), the network's
    (B, C, D, H, W) order; on index's device. (n_mels, frames) gives (4, n_bins, n_mels, frames).

    The same numbers as the seed's (n_bins, n_mels, frames, 4) tensor, channels first:
    expand(i)[b, c, d, h, w] == seed[b, d, h, w, c].
    """
    squeeze = index.dim() == 2
    if squeeze:
        index = index[None]
    table = _cached(("expand", n_bins, str(index.device), dtype),
                    lambda: torch.from_numpy(expansion_table(n_bins)).to(device=index.device, dtype=dtype))
    B, H, W = index.shape
    dense = table[index.long().reshape(-1)]                        # (B*H*W, 4*n_bins)
    dense = dense.reshape(B, H, W, 4, n_bins).permute(0, 3, 4, 1, 2)  # (B, 4, n_bins, H, W)
    dense = dense.contiguous()
    return dense[0] if squeeze else dense
