"""An exponential moving average of the network's weights (--ema-decay), the weights a run evaluates, keeps
and writes to model.pt when it is on.

One recipe run trains 8 epochs of 140 steps on 2 cores; its validation loss jumped between epochs (0.40,
0.51, 0.41, 0.28 ...) and two runs of the same command differed by several F1 points on the robustness
benchmark (benchmarks/results/robustness-repro.json). The average of the last few hundred steps' weights is
a cheap stand-in for averaging several networks (label --ensemble), at no labeling cost. Measured: the recipe
with --ema-decay 0.995 (robustness-ema.json) against the rerun without it, on the same features and timelines:
speech F1 higher under all seven conditions, music F1 under six; its validation loss fell at every epoch but the
last. The update costs 0.4 ms a step on one thread (346,915 weights).
"""

from __future__ import annotations

import copy

import torch


class WeightEMA:
    """`net` (B, C, D, H, W in, logits out) copied once; after every optimizer step `update()` moves the copy's
    weights and floating-point buffers (BatchNorm statistics) towards `source`'s by 1 - d, where
    d = min(decay, (1 + n) / (10 + n)) after n updates, so the first steps do not keep the random start for long.
    The copy never trains (eval mode, no gradients); integer buffers are copied as they are."""

    def __init__(self, source: torch.nn.Module, decay: float, state: dict | None = None, updates: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.source, self.decay, self.updates = source, decay, updates
        self.net = copy.deepcopy(source).eval().requires_grad_(False)
        if state is not None:
            self.net.load_state_dict(state)

    def rate(self) -> float:
        """The weight of the newest step: 1 - d."""
        return 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        a = self.rate()
        mine, theirs = self.net.state_dict(), self.source.state_dict()
        floats = [k for k, t in mine.items() if t.is_floating_point()]
        torch._foreach_lerp_([mine[k] for k in floats], [theirs[k] for k in floats], a)
        for k, t in mine.items():
            if not t.is_floating_point():
                t.copy_(theirs[k])
        self.updates += 1
