import io

import pytest
import torch

from model import Conv3DNet, FeatureConfig, NetConfig, count_parameters, load_checkpoint, save_checkpoint


def test_parameter_count_matches_seed():
    # the seed's Keras model reports 347,234, which counts BatchNorm's 448 running statistics too
    assert count_parameters(Conv3DNet()) == 346_786


def test_forward_any_frame_count():
    torch.manual_seed(0)
    net = Conv3DNet().eval()
    for frames in (64, 216):
        out = net(torch.rand(2, 4, 10, 128, frames))
        assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert net.time_stride == 8
    local = net.local_logits(torch.rand(1, 4, 10, 128, 216), pool_steps=5)
    assert local.shape == (1, 6, 2)      # 216 frames -> 27 pooled steps -> 6 stretches of 5 (last shorter)
    x = torch.rand(2, 4, 10, 128, 64)
    assert torch.allclose(net.local_logits(x, None)[:, 0], net(x), atol=1e-6)


def test_seed_input_shape_runs():
    net = Conv3DNet().eval()
    with torch.no_grad():
        assert net(torch.rand(1, 4, 10, 128, 1292)).shape == (1, 2)


def test_config_and_checkpoint_round_trip():
    cfg = NetConfig(channels=(8, 16, 32), hidden=(16, 8))
    assert NetConfig.from_dict(cfg.to_dict()) == cfg
    torch.manual_seed(0)
    net = Conv3DNet(cfg).eval()
    x = torch.rand(2, 4, 10, 32, 40)
    buf = io.BytesIO()
    save_checkpoint(buf, net, FeatureConfig(n_mels=32), epoch=3, metrics={"acc": 0.5})
    buf.seek(0)
    net2, fcfg, ckpt = load_checkpoint(buf)             # torch.load(weights_only=True) inside
    assert fcfg == FeatureConfig(n_mels=32) and net2.cfg == cfg and ckpt["epoch"] == 3
    assert torch.equal(net(x), net2(x))


def test_stats_pooling_mean_and_std_over_time():
    """pooling "stats": the head sees each channel's mean and standard deviation over each stretch of time."""
    torch.manual_seed(0)
    net = Conv3DNet(NetConfig(channels=(8, 16, 32), pooling="stats")).eval()
    assert net.head[0].in_features == 64
    x = torch.rand(2, 4, 10, 128, 216)
    with torch.no_grad():
        h = net.features(x).mean(dim=(2, 3))                            # (2, 32, 27)
        local = net.local_logits(x, pool_steps=5)                      # 27 steps -> 6 stretches, the last of 2
        assert local.shape == (2, 6, 2)
        for j, (a, b) in enumerate(((0, 5), (25, 27))):
            part = h[:, :, a:b]
            stats = torch.cat([part.mean(2), part.var(2, unbiased=False).add(1e-5).sqrt()], 1)
            assert torch.allclose(local[:, 5 * j], net.head(stats), atol=1e-5)
        assert torch.allclose(net.local_logits(x, None)[:, 0], net(x), atol=1e-6)
        # labeling short stretches: statistics over ~16 steps centred on each (17: centred on 5), cut at the edges
        wide = net.local_logits(x, pool_steps=5, context_steps=16)
        assert wide.shape == (2, 6, 2)
        for j, (a, b) in enumerate(((0, 11), (4, 21), (19, 27))):
            part = h[:, :, a:b]
            stats = torch.cat([part.mean(2), part.var(2, unbiased=False).add(1e-5).sqrt()], 1)
            assert torch.allclose(wide[:, (0, 2, 5)[j]], net.head(stats), atol=1e-5), j
        assert torch.equal(net.local_logits(x, 16, 16), net.local_logits(x, 16))   # a crop's span: no context
        assert not torch.allclose(net(x), net.head(torch.cat([h.mean(2), torch.zeros_like(h.mean(2))], 1)))
    buf = io.BytesIO()
    save_checkpoint(buf, net, FeatureConfig(), epoch=0, metrics={})
    buf.seek(0)
    assert load_checkpoint(buf)[0].cfg.pooling == "stats"
    with pytest.raises(ValueError, match="pooling"):
        NetConfig(pooling="max")
    old = {k: v for k, v in NetConfig().to_dict().items() if k != "pooling"}   # checkpoints written before it
    assert NetConfig.from_dict(old).pooling == "mean"
