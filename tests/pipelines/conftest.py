"""Fixtures of the pipeline tests: small checkpoints trained here on generated audio (session-wide, so
that every test module shares one of each)."""

import time

import numpy as np
import pytest
import torch

from model import Conv3DNet, FeatureConfig, expand, featurize, save_checkpoint
from pipelines.demo import make_clip

WIN = 4.0   # the test models' window: trained on 4 s crops


def _crop_batch(clips, rng, n, cfg):
    W = cfg.window_samples
    xs, ys = [], []
    for _ in range(n):
        k = int(rng.integers(len(clips)))
        x, y = clips[k]
        a = int(rng.integers(0, len(x) - W + 1))
        xs.append(x[a:a + W])
        ys.append(y)
    return featurize(np.stack(xs), cfg.sample_rate, cfg), torch.tensor(ys)


def _train(kinds: tuple, path: str, max_steps: int = 40, max_seconds: float = 60.0):
    """The seed Conv3DNet trained briefly with plain torch on 4 s random crops of generated clips of
    `kinds`; checked to separate held-out clips. Returns (path, cfg, net)."""
    from model import NetConfig

    torch.manual_seed(0)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    cfg = FeatureConfig(window_seconds=WIN)
    clips = [(make_clip(kind, 12.0, 500 + 10 * k + c), c) for k in range(6) for c, kind in enumerate(kinds)]
    net = Conv3DNet(NetConfig(n_classes=len(kinds), classes=kinds))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    t0 = time.time()
    net.train()
    for step in range(max_steps):
        idx, y = _crop_batch(clips, rng, 6, cfg)
        loss = torch.nn.functional.cross_entropy(net(expand(idx)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= 12 and loss.item() < 0.05 or time.time() - t0 > max_seconds:
            break
    # BatchNorm's running statistics lag the fast-moving weights of so short a run: re-estimate them
    # (cumulative average, dropout off) on a few more crops, as a longer training would have
    net.eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.reset_running_stats()
                m.momentum = None
                m.train()
        for _ in range(3):
            net(expand(_crop_batch(clips, rng, 8, cfg)[0]))
    net.eval()
    held = [(make_clip(kind, WIN, 900 + k), c) for k in range(4) for c, kind in enumerate(kinds)]
    with torch.inference_mode():
        p = torch.softmax(net(expand(featurize(np.stack([x for x, _ in held]), cfg.sample_rate, cfg))), -1)
    acc = float((p.argmax(1) == torch.tensor([c for _, c in held])).float().mean())
    assert acc == 1.0, (acc, p)
    with open(path, "wb") as f:
        save_checkpoint(f, net, cfg, steps=step + 1)
    torch.set_num_threads(old_threads)
    return path, cfg, net


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The seed's two classes, music and speech."""
    return _train(("music", "speech"), str(tmp_path_factory.mktemp("model") / "model.pt"))


@pytest.fixture(scope="session")
def trained3(tmp_path_factory):
    """Three classes: music, speech, noise."""
    return _train(("music", "speech", "noise"), str(tmp_path_factory.mktemp("model3") / "model.pt"), 100, 240.0)


