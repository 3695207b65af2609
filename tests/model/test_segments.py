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


def test_smoothing_absorbs_a_doubted_second_and_keeps_a_confident_stretch():
    from model.segments import smooth_labels

    edges = np.arange(0.0, 14.0)                     # speech, one 1 s pause the network calls noise, speech,
    sp, no = [0.05, 0.9, 0.05], [0.03, 0.02, 0.95]   # then 3 s of noise, 2 s of speech
    mean = np.array([sp] * 4 + [no] + [sp] * 3 + [no] * 3 + [sp] * 2)
    assert list(np.argmax(mean, 1)) == [1] * 4 + [2] + [1] * 3 + [2] * 3 + [1] * 2
    assert list(smooth_labels(edges, mean, 3.0)) == [1] * 8 + [2] * 3 + [1] * 2
    assert list(smooth_labels(edges, mean, 0.5)) == list(np.argmax(mean, 1))      # cheap changes: argmax
    segs = segments(edges, mean, min_seconds=0.0, switch_cost=3.0)
    assert [(a, b, c) for a, b, c, _ in segs] == [(0, 8, 1), (8, 11, 2), (11, 13, 1)]
    # the shortest-first merge alone decides alternating seconds by their lengths, not their scores: the end of
    # a GTZAN speech clip (speech-04, as labeled), confident speech seconds and doubted noise ones in turn
    e = np.array([21.36, 26.01, 26.94, 27.86, 28.79, 29.72, 30.0])
    alt = np.array([[0.05, 0.9, 0.05], [0.07, 0.46, 0.47], [0.08, 0.85, 0.07], [0.03, 0.36, 0.6],
                    [0.04, 0.93, 0.03], [0.01, 0.23, 0.76]])
    assert [(a, b, c) for a, b, c, _ in segments(e, alt, 2.0)] == [(21.36, 26.01, 1), (26.01, 30.0, 2)]
    assert [(a, b, c) for a, b, c, _ in segments(e, alt, 2.0, switch_cost=3.0)] == [(21.36, 30.0, 1)]

def test_smoothing_leaves_silence_where_the_level_put_it():
    from model.segments import smooth_labels

    edges = np.arange(0.0, 11.0)
    mean = np.array([[0.9, 0.1]] * 5 + [[0.2, 0.8]] * 5)
    e2, m2 = with_silence(edges, mean, [(3.5, 4.75), (7.0, 7.5)])
    lab = smooth_labels(e2, m2, 3.0, keep=2)
    mids = (e2[:-1] + e2[1:]) / 2
    assert all((lab == 2) == (((mids > 3.5) & (mids < 4.75)) | ((mids > 7.0) & (mids < 7.5))))
    assert list(lab[mids < 3.5]) == [0] * int((mids < 3.5).sum()) and set(lab[mids > 7.5]) == {1}
    assert len(smooth_labels(np.zeros(1), np.zeros((0, 3)), 3.0)) == 0
