"""Silence from the absolute level, laid over the network's timeline; segments keep it."""

import numpy as np

from model.segments import LevelTracker, segments, with_silence

SR = 22050


def test_level_tracker_finds_the_quiet_stretches_in_any_block_size():
    rng = np.random.default_rng(0)
    loud = lambda s: (rng.standard_normal(int(s * SR)) * 0.1).astype(np.float32)             # -20 dBFS
    quiet = lambda s, db: (rng.standard_normal(int(s * SR)) * 10 ** (db / 20)).astype(np.float32)
    x = np.concatenate([loud(2.0), np.zeros(int(1.5 * SR), np.float32), loud(1.0), quiet(2.0, -70),
                        loud(1.0), np.zeros(int(0.6 * SR), np.float32), loud(0.5), quiet(1.2, -40), loud(0.3),
                        np.zeros(int(1.1 * SR), np.float32)])
    want = [(2.0, 3.5), (4.5, 6.5), (10.1, 11.2)]     # the 0.6 s gap is too short, -40 dBFS is not quiet
    for block in (SR // 3, 12345, len(x)):
        t = LevelTracker(SR, threshold_db=-55, min_seconds=1.0)
        for a in range(0, len(x), block):
            t.feed(x[a:a + block])
        got = t.intervals()
        assert len(got) == len(want), (block, got)
        for (s, e), (ws, we) in zip(got, want):
            assert abs(s - ws) <= 0.06 and abs(e - we) <= 0.06, (block, got)  # 50 ms frames
    assert LevelTracker(SR).intervals() == []


def test_silence_overrides_the_network_and_survives_smoothing():
    edges = np.arange(0.0, 11.0)                     # the network: music 0-5, speech 5-10, 1 s units
    mean = np.array([[0.9, 0.1]] * 5 + [[0.2, 0.8]] * 5)
    e2, m2 = with_silence(edges, mean, [(3.5, 4.75)])
    assert m2.shape[1] == 3 and e2[0] == 0 and e2[-1] == 10
    segs = segments(e2, m2, min_seconds=2.0, keep=2)
    assert [(round(a, 2), round(b, 2), c) for a, b, c, _ in segs] == [(0, 3.5, 0), (3.5, 4.75, 2), (4.75, 10, 1)]
    assert segs[1][3] == 1.0
    # a short network segment between two silences stays (nothing to merge it into)
    e3, m3 = with_silence(edges, mean, [(2.0, 3.2), (3.6, 5.0)])
    labels = [c for _, _, c, _ in segments(e3, m3, min_seconds=2.0, keep=2)]
    assert labels == [0, 2, 0, 2, 1]
