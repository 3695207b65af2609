"""An exact fast eval forward of Conv3DNet on the uint8 colormap index, for batch labeling on CPU (and GPU).

Pure torch: same numbers as `net.local_logits(expand(index), ...)` within float rounding, and faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .features import colormap_rgba, luminance_bins
from .net import pool_time


class FastConv3D:
    """Conv3DNet's eval forward on the uint8 colormap index, without expand(); same numbers within float
    rounding (tests/model/test_fast.py compares it with net.local_logits(expand(index))).

    1. conv 1 as a lookup: expand() puts each pixel's RGBA into exactly one of n_bins luminance layers, so
       the 3x3x3 convolution at (d, h, w) is a sum over the 9 (kh, kw) neighbours of a table row chosen by
       the neighbour's index: T[kh, kw, index] (n_bins x C_out values, zero where |layer - d| > 1). One
       F.embedding_bag(mode='sum') per chunk of frames (index 256 = zero padding; the bias rides on the
       centre tap, which is never padding).
    2. pool first: eval BatchNorm is a per-channel affine map y*s + t and ReLU is monotone, so
       maxpool(bn(relu(y))) == bn(relu(maxpool(y))) where s >= 0 and bn(relu(-maxpool(-y))) where s < 0
       (the conv of such channels is negated: exact). Pooling first cuts ReLU/BN work 8x.
    3. convolutions 2 and 3 call oneDNN directly in channels_last_3d (PyTorch's dispatcher falls back to
       a slow im2col kernel for batch 1) on CPU; F.conv3d elsewhere.
    """

    def __init__(self, net, n_bins: int = 10, chunk_frames: int = 256, device="cpu"):
        if chunk_frames % 2:
            raise ValueError("chunk_frames must be even")
        self.net, self.n_bins, self.chunk, self.device = net.eval().to(device), n_bins, chunk_frames, torch.device(device)
        blocks = list(net.blocks)
        self.signs, self.bns = [], []
        for b in blocks:
            s = torch.where(b.bn.weight.detach() < 0, -1.0, 1.0).to(self.device)
            self.signs.append(s)
            self.bns.append(b.bn)
        c0 = blocks[0].conv
        if c0.kernel_size != (3, 3, 3) or c0.padding != (1, 1, 1) or c0.in_channels != 4:
            raise ValueError("FastConv3D expects the seed's 3x3x3 'same' convolutions on RGBA input")
        s0 = self.signs[0].double().cpu()
        W = c0.weight.detach().double().cpu() * s0.view(-1, 1, 1, 1, 1)          # (O, 4, kd, kh, kw)
        rgba, L = torch.from_numpy(colormap_rgba()), torch.from_numpy(luminance_bins(n_bins))
        O = W.shape[0]
        T = torch.zeros(3, 3, 257, n_bins, O, dtype=torch.float64)
        for d in range(n_bins):
            kd = L - d + 1
            ks = torch.nonzero((kd >= 0) & (kd <= 2))[:, 0]
            T[:, :, ks, d, :] = torch.einsum("ockhw,kc->hwko", W[:, :, kd[ks]], rgba[ks])
        T[1, 1, :256] += c0.bias.detach().double().cpu() * s0
        self.table = T.reshape(9 * 257, n_bins * O).float().to(self.device)
        self.offsets = (torch.arange(9) * 257).view(1, 1, 1, 9).to(self.device)
        self.convs = []
        for b, s in zip(blocks[1:], self.signs[1:]):
            w = (b.conv.weight.detach() * s.view(-1, 1, 1, 1, 1)).contiguous(memory_format=torch.channels_last_3d)
            self.convs.append((w, (b.conv.bias.detach() * s).contiguous()))

    def _conv(self, h, w, b):
        if h.device.type == "cpu":
            return torch.mkldnn_convolution(h, w, b, [1, 1, 1], [1, 1, 1], [1, 1, 1], 1)
        return F.conv3d(h, w, b, padding=1)

    def _relu_bn(self, m, i):
        return self.bns[i](torch.relu(m * self.signs[i].view(1, -1, 1, 1, 1)))

    def features(self, index):
        """uint8 index (B, n_mels, frames) -> the feature map of net.features(expand(index))."""
        index = index.to(self.device)
        B, H, Wd = index.shape
        D, O = self.n_bins, self.table.shape[1] // self.n_bins
        ip = F.pad(index.long(), (1, 1, 1, 1), value=256)
        W2 = Wd // 2 * 2                                               # max pooling floors
        outs = []
        for a in range(0, W2, self.chunk):
            w = min(a + self.chunk, W2) - a
            bag = torch.stack([ip[:, kh:kh + H, a + kw:a + kw + w] for kh in range(3) for kw in range(3)], -1)
            y = F.embedding_bag((bag + self.offsets).reshape(-1, 9), self.table, mode="sum").view(B, H, w, D, O)
            outs.append(F.max_pool3d(y.permute(0, 4, 1, 2, 3), 2))  # (B, O, H/2, w/2, D/2), channels last
        m = torch.cat(outs, 3).permute(0, 1, 4, 2, 3).contiguous(memory_format=torch.channels_last_3d)
        h = self._relu_bn(m, 0)
        for i, (w, b) in enumerate(self.convs, 1):
            h = self._relu_bn(F.max_pool3d(self._conv(h, w, b), 2), i)
        return h

    def local_logits(self, index, pool_steps: int | None, context_steps: int | None = None):
        """(B, n_local, n_classes) logits, as net.local_logits(expand(index), pool_steps, context_steps) (the same
        signature); pool_steps None: one global logit per window, as net(expand(index))."""
        h = self.features(index).mean(dim=(2, 3))                      # (B, C, W')
        return self.net.head(pool_time(h, pool_steps, self.net.cfg.pooling, context_steps))
