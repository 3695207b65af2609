import numpy as np
import torch

from model import Conv3DNet, FeatureConfig, expand
from model.crops import mask_, random_crops, real_frames, window_logits

WIN = 4.0


def test_crops_stay_in_real_audio_and_masks_are_the_floor():
    rng = np.random.default_rng(0)
    x = np.full((3, 16, 100), 200, np.uint8)
    x[:, :, 40:] = 7                                   # frames past the real audio
    c = random_crops(x, np.array([40, 40, 40]), 30, rng)
    assert c.shape == (3, 16, 30) and (c == 200).all()
    m = mask_(c.copy(), rng, time_masks=2, time_width=0.5, freq_masks=2, freq_width=8)
    assert set(np.unique(m)) <= {0, 200} and (m == 0).any()
    cfg = FeatureConfig(window_seconds=WIN)
    assert real_frames(WIN, cfg) == cfg.n_frames() and real_frames(1.0, cfg) == cfg.n_frames(22050)


def test_window_logits_average_the_stretches_that_hold_real_audio():
    torch.manual_seed(0)
    net = Conv3DNet().eval()
    idx = np.random.default_rng(1).integers(0, 256, (3, 128, 64), dtype=np.uint8)
    x = expand(torch.from_numpy(idx))
    with torch.no_grad():
        whole = net(x)                                                  # (3, C): one global pooling
        local = net.local_logits(x, 2)                                  # (3, 4, C): 2 steps = 16-frame stretches
    # one stretch as long as the window: the plain forward pass
    assert torch.allclose(window_logits(net, idx, np.array([64, 64, 64]), 64, batch_size=2), whole, atol=1e-5)
    # real audio 64, 16 and 40 frames: all 4 stretches, the first only, the first 3 (starts 0, 16, 32 < 40);
    # shortest first, batches of 2: (16, 40) run cut after 48 frames (40 rounded up to whole stretches), 64 whole
    got = window_logits(net, idx, np.array([64, 16, 40]), 16, batch_size=2)
    with torch.no_grad():
        cut = net.local_logits(x[1:, ..., :48], 2)                      # (2, 3, C)
    want = torch.stack([local[0].mean(0), cut[0, 0], cut[1, :3].mean(0)])
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(cut[1, 2], local[2, 2], atol=1e-5)     # the cut is real: padding changes the edge
    assert window_logits(net, idx[:0], np.zeros(0), 16).shape == (0, 2)


def test_window_logits_of_a_variant_network_take_the_plain_forward():
    """FastConv3D handles the seed's first convolution only; another one is scored by the plain network."""
    torch.manual_seed(0)
    net = Conv3DNet()
    net.blocks[0].conv = torch.nn.Conv3d(4, net.blocks[0].conv.out_channels, 5, padding=2)
    net.eval()
    idx = np.random.default_rng(2).integers(0, 256, (2, 128, 32), dtype=np.uint8)
    with torch.no_grad():
        want = net(expand(torch.from_numpy(idx)))
    assert torch.allclose(window_logits(net, idx, np.array([32, 32]), 32), want, atol=1e-5)
