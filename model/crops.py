"""Training crops, masking and crop-averaged evaluation on the uint8 colormap index (pure torch/numpy).

The network is fully convolutional up to its global pooling, so it trains on random time crops of each
window and evaluates a whole window in one pass, averaging the logits of its crop-length stretches.
"""

from __future__ import annotations

import numpy as np
import torch

from .fast import FastConv3D
from .features import FeatureConfig, expand
from .net import Conv3DNet


def real_frames(duration: float, cfg: FeatureConfig) -> int:
    """Frames of a window that hold real audio (the last window of a file is zero-padded)."""
    return min(cfg.n_frames(), cfg.n_frames(int(round(duration * cfg.sample_rate))))


def random_crops(index: np.ndarray, real: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """(B, n_mels, frames) uint8 -> (B, n_mels, crop): a random stretch of each window's real audio."""
    B, _, W = index.shape
    crop = min(crop, W)
    out = np.empty((B, index.shape[1], crop), np.uint8)
    for i in range(B):
        hi = max(0, min(int(real[i]), W) - crop)
        s = int(rng.integers(0, hi + 1))
        out[i] = index[i, :, s:s + crop]
    return out


def mask_(x: np.ndarray, rng: np.random.Generator, time_masks: int, time_width: float, freq_masks: int,
          freq_width: int) -> np.ndarray:
    """SpecAugment on the index, in place: up to time_width (fraction of frames) wide time stripes and
    up to freq_width mels wide frequency stripes set to index 0, the colormap's floor (silence)."""
    B, H, W = x.shape
    for i in range(B):
        for _ in range(time_masks):
            w = int(rng.integers(0, max(1, int(time_width * W)) + 1))
            s = int(rng.integers(0, W - w + 1))
            x[i, :, s:s + w] = 0
        for _ in range(freq_masks):
            w = int(rng.integers(0, min(freq_width, H) + 1))
            s = int(rng.integers(0, H - w + 1))
            x[i, s:s + w, :] = 0
    return x


def window_logits(net: Conv3DNet, index: np.ndarray, real: np.ndarray, crop_frames: int, n_bins: int = 10,
                  device="cpu", batch_size: int = 4) -> torch.Tensor:
    """uint8 windows (N, n_mels, frames) -> (N, n_classes) float32 logits: the mean of the logits of the
    crop-length stretches of each window that start inside its real audio, from one forward pass per
    window (the network in eval mode). Windows go shortest first and each batch is cut after its longest
    real audio (rounded up to whole stretches): a padded 30 s window of a 5 s clip costs a sixth.
    On the CPU the pass is FastConv3D's (the same numbers within float rounding): 0.58 against 1.33 s per
    30 s window on one thread (measured here), which took ~60 s off each training epoch's validation
    (105-116 -> 47-51 s)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    fast = _fast_or_none(net, n_bins, device)
    pool = max(1, crop_frames // net.time_stride)                              # feature-map steps per stretch
    step = pool * net.time_stride                                              # frames per stretch
    real = np.asarray(real)
    order = np.argsort(real, kind="stable")
    out = torch.zeros(len(index), net.cfg.n_classes)
    with torch.no_grad():
        for a in range(0, len(index), batch_size):
            sel = order[a:a + batch_size]
            W = index.shape[-1]
            keep = min(W, max(step, -(-int(real[sel].max()) // step) * step))
            ix = torch.from_numpy(np.ascontiguousarray(index[sel][..., :keep])).to(device)
            if fast is not None:
                local = fast.local_logits(ix, pool)                             # (b, L, C)
            else:
                x = expand(ix, n_bins)
                if cuda:
                    x = x.to(memory_format=torch.channels_last_3d)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    local = net.local_logits(x, pool).float()               # (b, L, C)
            starts = torch.arange(local.shape[1], device=device) * step
            r = torch.as_tensor(real[sel], device=device)
            valid = (starts[None, :] < r[:, None]) | (starts[None, :] == 0)
            w = valid.float()[..., None]
            out[torch.from_numpy(sel)] = ((local * w).sum(1) / w.sum(1)).cpu()
    return out


def _fast_or_none(net: Conv3DNet, n_bins: int, device: torch.device) -> FastConv3D | None:
    """FastConv3D on the CPU for the seed's first convolution; None (the plain forward) elsewhere."""
    if device.type != "cpu":
        return None
    try:
        return FastConv3D(net.eval(), n_bins, device=device)
    except ValueError:      # a variant whose first convolution is not the seed's 3x3x3 on RGBA
        return None
