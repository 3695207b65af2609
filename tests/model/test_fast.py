import numpy as np
import pytest
import torch

from model import Conv3DNet, FastConv3D, FeatureConfig, NetConfig, expand, featurize


def _net(seed: int, train_steps: int, channels: tuple = NetConfig.channels, pooling: str = "mean") -> Conv3DNet:
    """A network with non-trivial BatchNorm (negative scales too) and, for train_steps > 0, weights moved
    away from their initialization by a few AdamW steps on random data."""
    torch.manual_seed(seed)
    net = Conv3DNet(NetConfig(channels=channels, pooling=pooling))
    opt = torch.optim.AdamW(net.parameters(), 1e-2)
    for _ in range(train_steps):
        x = expand(torch.randint(0, 256, (2, 128, 40), dtype=torch.uint8))
        loss = torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(-1, 1)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.mark.parametrize("seed,train_steps,channels,pooling", [(1, 0, (32, 64, 128), "mean"), (2, 3, (32, 64, 128), "mean"),
                                                               (3, 1, (48, 96, 192), "mean"), (4, 1, (32, 64, 128), "stats")])
def test_fast_forward_equals_plain_network(seed, train_steps, channels, pooling):
    """The exact speedups (conv 1 as a lookup, pooling before ReLU/BN, oneDNN direct) change nothing but
    float rounding: batches of 1 and 3, odd frame counts, chunking, BN scales of both signs, a wider network,
    statistics pooling."""
    cfg = FeatureConfig()
    net = _net(seed, train_steps, channels, pooling)
    fast = FastConv3D(net, chunk_frames=64)
    rng = np.random.default_rng(seed)
    for B, seconds in ((1, 3.0), (3, 2.7)):
        x = rng.standard_normal((B, int(seconds * cfg.sample_rate))).astype(np.float32) * 0.1
        x[:, :5000] += np.sin(np.arange(5000) * 0.05).astype(np.float32)
        idx = featurize(x, cfg.sample_rate, cfg)
        with torch.inference_mode():
            assert torch.allclose(fast.features(idx), net.features(expand(idx)), atol=2e-5, rtol=1e-4)
            for k, context in ((1, None), (5, None), (5, 16)):
                ref = net.local_logits(expand(idx), k, context)
                assert torch.allclose(fast.local_logits(idx, k, context), ref, atol=2e-5, rtol=1e-4)
            assert torch.allclose(fast.local_logits(idx, None)[:, 0], net(expand(idx)), atol=2e-5, rtol=1e-4)


def test_fast_forward_rejects_other_first_convolutions():
    net = Conv3DNet()
    net.blocks[0].conv = torch.nn.Conv3d(4, net.blocks[0].conv.out_channels, 5, padding=2)
    with pytest.raises(ValueError, match="3x3x3"):
        FastConv3D(net)
    with pytest.raises(ValueError, match="even"):
        FastConv3D(Conv3DNet(), chunk_frames=63)
