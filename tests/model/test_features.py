"""The transform against librosa and the dense tensor against a direct matplotlib implementation."""

import numpy as np
import pytest
import torch

from model import FeatureConfig, colormap_index, expand, featurize, normalized_spectrogram
from model.features import expansion_table, luminance_bins
from pipelines.demo import make_clip

CFG = FeatureConfig()


def dense_reference(norm: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """The seed's tensor written the obvious way: matplotlib's magma on the normalized spectrogram,
    then one layer per luminance bin. (n_mels, frames) -> (n_bins, n_mels, frames, 4)."""
    from matplotlib import colormaps

    rgba = colormaps["magma"](norm)                                    # (H, W, 4) float64
    lum = 0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2]
    edges = np.linspace(0, 1, n_bins + 1)
    out = np.zeros((n_bins, *norm.shape, 4), dtype=np.float32)
    for i in range(n_bins):
        upper = lum <= edges[i + 1] if i == n_bins - 1 else lum < edges[i + 1]
        mask = (lum >= edges[i]) & upper
        out[i][mask] = rgba[mask]
    return out


def test_config_round_trip():
    cfg = FeatureConfig(window_seconds=5.0, n_mels=64)
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    assert FeatureConfig.from_dict(CFG.to_dict()) == CFG
    assert CFG.n_frames() == 1292
    with pytest.raises(ValueError, match="unknown"):
        FeatureConfig.from_dict({**CFG.to_dict(), "hopp": 3})
    with pytest.raises(ValueError, match="colormap"):
        FeatureConfig(colormap="viridis")


def test_embedded_table_is_matplotlibs_magma():
    from matplotlib import colormaps

    table = colormaps["magma"](np.arange(256))
    lut = expansion_table(10).reshape(256, 4, 10)
    layer = luminance_bins(10)
    np.testing.assert_array_equal(lut[np.arange(256), :, layer], table.astype(np.float32))
    assert (lut.sum(axis=1) > 0).sum(axis=1).tolist() == [1] * 256   # exactly one layer per entry
    assert np.all(np.diff(layer) >= 0)                                # luminance rises along the table


@pytest.mark.parametrize("shape", [(3, 16, 40), (2, 128, 1292)])
def test_expand_equals_dense_reference_random(shape):
    rng = np.random.default_rng(1)
    norm = rng.random(shape).astype(np.float32)
    norm[0, 0, :4] = [0.0, 1.0, 0.5, 255 / 256]                       # edges of the index range
    idx = colormap_index(torch.from_numpy(norm))
    dense = expand(idx)                                                # (B, 4, 10, H, W)
    assert dense.shape == (shape[0], 4, 10, *shape[1:]) and dense.dtype == torch.float32
    for b in range(shape[0]):
        ref = dense_reference(norm[b])                                 # (10, H, W, 4)
        np.testing.assert_array_equal(dense[b].permute(1, 2, 3, 0).numpy(), ref)


def test_expand_equals_dense_reference_on_audio():
    x = np.stack([make_clip("music", 30.0, 3), make_clip("speech", 30.0, 4)])
    norm = normalized_spectrogram(x, CFG)
    idx = featurize(x, 22050, CFG)
    assert idx.shape == (2, 128, 1292) and idx.dtype == torch.uint8
    dense = expand(idx)
    for b in range(2):
        np.testing.assert_array_equal(dense[b].permute(1, 2, 3, 0).numpy(), dense_reference(norm[b].numpy()))


def test_matches_librosa():
    librosa = pytest.importorskip("librosa")
    for kind, seed in [("music", 0), ("speech", 1)]:
        y = make_clip(kind, 30.0, seed)
        S = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2048, hop_length=512, n_mels=128)
        db = librosa.power_to_db(S, ref=np.max, top_db=80.0)
        ref = (db - db.min()) / (db.max() - db.min())
        mine = normalized_spectrogram(y, CFG).numpy()
        assert mine.shape == ref.shape == (128, 1292)
        assert np.abs(mine - ref).max() < 1e-4
        ref_idx = np.clip((ref * 256).astype(int), 0, 255)
        assert (featurize(y, 22050, CFG).numpy() == ref_idx).mean() >= 0.999


def test_batched_equals_single_and_silence():
    x = np.stack([make_clip("music", 5.0, 0), np.zeros(5 * 22050, np.float32)])
    cfg = FeatureConfig(window_seconds=5.0)
    both = featurize(x, 22050, cfg)
    assert torch.equal(both[0], featurize(x[0], 22050, cfg))
    assert int(both[1].max()) == 0                                     # silence: no range, all zeros
    with pytest.raises(ValueError, match="Hz"):
        featurize(x, 16000, cfg)


def test_expand_on_cpu_batch_dtype():
    idx = torch.randint(0, 256, (4, 128, 50), dtype=torch.uint8)
    d = expand(idx, dtype=torch.bfloat16)
    assert d.shape == (4, 4, 10, 128, 50) and d.dtype == torch.bfloat16
    # alpha is 1 in exactly one layer per pixel
    assert torch.equal(d[:, 3].float().sum(dim=1), torch.ones(4, 128, 50))
