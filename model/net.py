"""The seed's Conv3D network, in PyTorch.

Three blocks of Conv3d(3x3x3, same padding) -> ReLU -> BatchNorm -> MaxPool3d(2) -> Dropout, global
average pooling, then Dense 256 -> 128 -> n_classes. Input is expand()'s (B, 4, 10, n_mels, frames):
RGBA channels over 10 luminance layers. Global pooling makes it accept any number of frames >= 8, so
it trains on time crops and labels long audio window by window.

A variant of the same family (NetConfig.pooling = "stats"): the feature map averaged over layers and mels,
then its mean *and standard deviation* over time (x-vector statistics pooling), so that the head sees how
much each channel moves over the crop (speech's syllables, music's held notes, steady noise) and not only
its average; the head's input doubles (2C).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch
import torch.nn as nn


POOLINGS = ("mean", "stats")


@dataclass(frozen=True)
class NetConfig:
    in_channels: int = 4          # RGBA
    channels: tuple = (32, 64, 128)
    dropouts: tuple = (0.25, 0.25, 0.3)
    hidden: tuple = (256, 128)
    n_classes: int = 2
    classes: tuple = ("music", "speech")
    pooling: str = "mean"         # over time: "mean" (the seed's) or "stats" (mean and standard deviation)

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown NetConfig keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm3d(c_out)
        self.pool = nn.MaxPool3d(2)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.pool(self.bn(torch.relu(self.conv(x)))))


class Conv3DNet(nn.Module):
    def __init__(self, cfg: NetConfig = NetConfig()):
        super().__init__()
        self.cfg = cfg
        c_in, blocks = cfg.in_channels, []
        for c_out, p in zip(cfg.channels, cfg.dropouts):
            blocks.append(Block(c_in, c_out, p))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        dims = (cfg.channels[-1] * (2 if cfg.pooling == "stats" else 1), *cfg.hidden)
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Sequential(*layers, nn.Linear(dims[-1], cfg.n_classes))

    @property
    def time_stride(self) -> int:
        """Spectrogram frames per feature-map time step: each block max-pools time by 2 (8 for the seed)."""
        return 2 ** len(self.cfg.channels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 4, 10, n_mels, frames) -> (B, C, D', H', frames // time_stride) feature map before pooling."""
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).mean(dim=(2, 3))                      # (B, C, W')
        return self.head(pool_time(h, None, self.cfg.pooling)[:, 0])  # (B, n_classes) logits

    def local_logits(self, x: torch.Tensor, pool_steps: int | None, context_steps: int | None = None) -> torch.Tensor:
        """Logits for consecutive time stretches of one forward pass: average-pool the feature map over
        pool_steps of its time steps (time_stride frames each) instead of all of them; None: one global
        logit per window; context_steps: see pool_time. (B, ...) -> (B, n_local, n_classes).
        FastConv3D.local_logits: same signature."""
        h = self.features(x).mean(dim=(2, 3))                      # (B, C, W')
        return self.head(pool_time(h, pool_steps, self.cfg.pooling, context_steps))  # (B, n_local, n_classes)


def pool_time(h: torch.Tensor, pool_steps: int | None, pooling: str = "mean",
              context_steps: int | None = None) -> torch.Tensor:
    """(B, C, W') feature map over time -> (B, n_local, C) means over consecutive stretches of pool_steps
    time steps (the last one may be shorter; None: one over all of them); pooling "stats" appends each
    stretch's standard deviation: (B, n_local, 2C). With "stats" and context_steps > pool_steps, each stretch's
    statistics are taken over ~context_steps steps centred on it (cut at the window's edges), the span the
    network trained on: a standard deviation over the ~5 steps of a 1 s stretch is another quantity than over
    a 3 s crop's 16, and labeling timelines with it lost most of what the folds' clip figures gained (README)."""
    L = h.shape[2]
    k = L if pool_steps is None else max(1, int(pool_steps))
    c = k if pooling == "mean" or not context_steps or context_steps <= k or L < k else \
        k + 2 * -(-(int(context_steps) - k) // 2)                   # centred: c - k even
    pool = functools.partial(nn.functional.avg_pool1d, kernel_size=c, stride=k, padding=(c - k) // 2,
                             ceil_mode=True, count_include_pad=False)
    mean = pool(h)                                                  # (B, C, n_local), n_local = ceil(L / k)
    if pooling == "mean":
        return mean.transpose(1, 2)
    std = torch.sqrt((pool(h * h) - mean * mean).clamp(min=0.0) + 1e-5)   # the epsilon keeps the gradient finite at 0
    return torch.cat([mean, std], dim=1).transpose(1, 2)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
