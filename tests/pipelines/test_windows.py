"""pipelines/windows.py: the band limit (FeatureConfig.band_limit_hz) featurize and label put on what the
network hears."""

import numpy as np

from model import FeatureConfig
from pipelines.demo import wav_bytes
from pipelines.windows import iter_windows

SR = 22050


def spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.rfftfreq(len(x), 1 / SR), np.abs(np.fft.rfft(x.astype(np.float64))) ** 2


def test_band_limit_removes_what_lies_above_it_and_keeps_the_rest(tmp_path):
    t = np.arange(SR * 7) / SR
    x = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 7000 * t)).astype(np.float32)
    path = tmp_path / "two_tones.wav"
    path.write_bytes(wav_bytes(x, SR))
    cfg = FeatureConfig(window_seconds=3.0)
    plain = list(iter_windows(str(path), cfg))
    limited = list(iter_windows(str(path), FeatureConfig(window_seconds=3.0, band_limit_hz=4000)))
    assert [(w.start, w.n) for w in limited] == [(w.start, w.n) for w in plain]   # the same windows
    for p, q in zip(plain, limited):
        f, P = spectrum(p.samples)
        _, Q = spectrum(q.samples)
        hi, lo = (f > 6500) & (f < 7500), (f > 900) & (f < 1100)
        assert P[hi].sum() > 0.3 * P.sum()                       # the 7 kHz tone is there without the limit
        assert Q[hi].sum() < 1e-5 * Q.sum()                      # and gone with it
        assert abs(Q[lo].sum() / P[lo].sum() - 1) < 0.05        # the 1 kHz tone is kept
    same = list(iter_windows(str(path), FeatureConfig(window_seconds=3.0, band_limit_hz=SR / 2)))   # Nyquist: as is
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(same, plain))


def test_band_limit_is_validated():
    import pytest

    for bad in (-1.0, 500.0):
        with pytest.raises(ValueError, match="band_limit_hz"):
            FeatureConfig(band_limit_hz=bad)
