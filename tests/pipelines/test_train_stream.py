"""The stream ingest path's worker side without a cluster: the crops of a pass over shard rows (pyarrow
tables of real featurized demo audio, what Ray Data's iter_batches hands the worker), equal step counts
whatever the pass holds, and the in-memory path's batches."""

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from model import FeatureConfig, featurize
from model.crops import real_frames
from pipelines.demo import make_clip
from pipelines.train_config import TrainConfig
from pipelines.train_data import memory_batches, rows_to_arrays
from pipelines.train_stream import crop_counts, stream_batches, table_arrays

FCFG = FeatureConfig(window_seconds=4.0)
CLASSES = ("music", "speech")


@pytest.fixture(scope="module")
def rows():
    """10 windows of generated audio, alternating music and speech; the last two only 2.5 s of real audio."""
    out = []
    for k in range(10):
        kind = CLASSES[k % 2]
        seconds = 2.5 if k >= 8 else 4.0
        x = make_clip(kind, seconds, 100 + k)
        x = np.pad(x, (0, FCFG.window_samples - len(x)))
        index = featurize(x[None], FCFG.sample_rate, FCFG)[0].numpy().astype(np.uint8)
        out.append({"uri": f"/d/{kind}{k}.wav", "augment": "", "window_start": 0.0, "window_duration": seconds,
                    "label": kind, "n_mels": FCFG.n_mels, "n_frames": FCFG.n_frames(), "index": index.tobytes()})
    return out


def _tables(rows, size=3, pulled=None):
    for a in range(0, len(rows), size):
        if pulled is not None:
            pulled.append(a)
        yield pa.Table.from_pylist(rows[a:a + size])


def _cfg(**kw):
    return dataclasses.replace(TrainConfig(classes=CLASSES, batch_size=8, crop_frames=32, time_masks=0, freq_masks=0),
                               **kw)


def test_crop_counts_give_exactly_the_crops_needed_spread_evenly():
    for rows, need in [(10, 20), (10, 25), (7, 3), (48, 96), (5, 5), (1, 4)]:
        chunks = [crop_counts(a, min(3, rows - a), rows, need) for a in range(0, rows, 3)]
        k = np.concatenate(chunks)
        assert k.sum() == need and k.max() - k.min() <= 1, (rows, need, k)
    assert crop_counts(10, 5, 10, 20).sum() == 10     # rows beyond the expected pass keep giving crops


def test_one_pass_gives_exact_steps_of_true_crops(rows):
    """2 workers' local batch 4, 5 steps: 20 crops from 10 windows, 2 of each, each a stretch of its
    window's real audio, labels its own."""
    cfg = _cfg(steps_per_epoch=5)
    out = list(stream_batches(_tables(rows), cfg, FCFG, 10, np.random.default_rng(0), world=2))
    assert len(out) == 5 and all(x.shape == (4, FCFG.n_mels, 32) and x.dtype == np.uint8 for x, _ in out)
    index = [np.frombuffer(r["index"], np.uint8).reshape(FCFG.n_mels, -1) for r in rows]
    used = np.zeros(len(rows), int)
    for x, y in out:
        for crop, lab in zip(x, y):
            hits = [w for w, r in enumerate(rows) if CLASSES.index(r["label"]) == lab and any(
                np.array_equal(crop, index[w][:, s:s + 32])
                for s in range(real_frames(r["window_duration"], FCFG) - 32 + 1))]
            assert hits, "a crop that is no real stretch of a window of its label"
            used[hits[0]] += 1
    assert (used == 2).all(), used


def test_other_row_counts_still_give_the_same_steps(rows):
    cfg = _cfg(steps_per_epoch=5)
    # fewer rows than expected (an uneven split): topped up with crops of the last windows
    short = list(stream_batches(_tables(rows), cfg, FCFG, 16, np.random.default_rng(1), world=2))
    assert len(short) == 5 and all(len(y) == 4 for _, y in short)
    # more rows than expected: the epoch ends after its steps without reading the rest of the pass
    pulled = []
    long_ = list(stream_batches(_tables(rows, 1, pulled), cfg, FCFG, 5, np.random.default_rng(1), world=2))
    assert len(long_) == 5 and len(pulled) < len(rows)
    with pytest.raises(RuntimeError, match="rank 1 got no training windows"):
        list(stream_batches(iter([]), cfg, FCFG, 5, np.random.default_rng(1), world=2, rank=1))


def test_masks_apply_to_stream_and_memory_batches(rows):
    cfg = _cfg(steps_per_epoch=3, time_masks=2, time_mask_fraction=0.25, freq_masks=2, freq_mask_mels=12)
    for x, _ in stream_batches(_tables(rows), cfg, FCFG, 10, np.random.default_rng(2), world=1):
        assert x.shape[0] == 8 and (x == 0).any()
    train = rows_to_arrays(rows, FCFG, CLASSES)
    mem = list(memory_batches(train, cfg, np.random.default_rng(2), world=1))
    assert len(mem) == 3 and all(x.shape == (8, FCFG.n_mels, 32) for x, _ in mem)
    # the same generator state gives the same batches (what the run's seed promises)
    again = list(memory_batches(train, cfg, np.random.default_rng(2), world=1))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(mem, again))


def test_table_arrays_keep_the_order(rows):
    index, label, real = table_arrays(pa.Table.from_pylist(rows[:4]), FCFG, CLASSES)
    assert index.shape == (4, FCFG.n_mels, FCFG.n_frames()) and list(label) == [0, 1, 0, 1]
    assert (real == FCFG.n_frames()).all()
    assert np.array_equal(index[1], np.frombuffer(rows[1]["index"], np.uint8).reshape(FCFG.n_mels, -1))
