"""Each archive condition does what it says on generated audio, and keeps the file's label."""

import numpy as np
import pytest

from pipelines import augment as A
from pipelines.demo import make_clip

SR = 22050


def energy_above(x: np.ndarray, sr: int, hz: float) -> float:
    """Fraction of the signal's energy above hz."""
    X = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(X[f > hz].sum() / X.sum())


def test_band_limit_leaves_no_energy_above_the_cutoff():
    x = np.random.default_rng(0).standard_normal(SR * 2).astype(np.float32) * 0.1   # white: energy everywhere
    assert energy_above(x, SR, 4100) > 0.5
    for rate in (8000, 11025, 16000):
        y = A.band_limit(x, SR, rate)
        assert len(y) == len(x)
        assert energy_above(y, SR, rate / 2 * 1.02) < 1e-4          # nothing past the new Nyquist
        keep = rate / 2 * 0.9                                         # the band below stays as it was
        below = [np.sum(np.abs(np.fft.rfft(z.astype(np.float64)))[np.fft.rfftfreq(len(z), 1 / SR) < keep] ** 2)
                 for z in (x, y)]
        assert abs(below[1] / below[0] - 1) < 0.02


def test_telephone_band_is_300_to_3400_hz():
    x = np.random.default_rng(1).standard_normal(SR * 2).astype(np.float32) * 0.1
    y = A.telephone(x, SR)
    X = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    inside = X[(f > 400) & (f < 3300)].sum()
    assert X[f > 4000].sum() < 1e-3 * inside and X[f < 150].sum() < 0.01 * inside


@pytest.mark.parametrize("snr", [0.0, 7.5, 20.0])
def test_noise_at_the_asked_snr(snr):
    x = make_clip("speech", 3.0, 3) * 0.5
    noise = np.random.default_rng(2).standard_normal(SR).astype(np.float32)   # shorter: tiled
    y = A.mix_at_snr(x, noise, snr)
    n = y - x
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(n.astype(np.float64) ** 2))
    assert abs(measured - snr) < 0.5


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_codec_round_trip_is_lossy_but_close(fmt):
    x = make_clip("music", 3.0, 4)
    y = A.codec(x, SR, fmt, compression=0.95)
    assert len(y) == len(x) and np.isfinite(y).all()
    assert not np.allclose(x, y, atol=1e-3)                                    # really coded
    # same signal, up to the encoder's delay: the best alignment correlates strongly
    c = max(np.corrcoef(x[: len(x) - d], y[d:])[0, 1] for d in range(0, 3000, 1))
    assert c > 0.8


@pytest.mark.parametrize("factor", [0.7, 0.9, 1.25, 1.4])
def test_speed_moves_pitch_by_the_factor_and_keeps_the_length(factor):
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SR * 2) / SR)).astype(np.float32)
    y = A.speed(x, SR, factor)
    assert len(y) == len(x)
    f = np.fft.rfftfreq(len(y), 1 / SR)[np.argmax(np.abs(np.fft.rfft(y)))]
    assert abs(f - 440 * factor) < 2                                 # tempo and pitch move together
    frames = np.sqrt(np.mean(y[: len(y) // 441 * 441].reshape(-1, 441) ** 2, axis=1))
    assert frames.min() > 0.3                                        # faster: repeated, never padded with silence


def test_speed_kind_draws_factors_in_range_and_is_opt_in():
    x = make_clip("speech", 1.0, 7)
    tags = {A.augment(x, SR, "speed", A.rng_for(f"f{i}.wav", 0))[1] for i in range(40)}
    factors = sorted(float(t[len("speed"):]) for t in tags)
    assert len(factors) > 10 and 0.7 <= factors[0] < 0.85 and 1.2 < factors[-1] <= 1.4
    assert "speed" not in A.KINDS and A.AugmentConfig(variants=1, kinds=("speed",)).kinds == ("speed",)


def test_augment_is_deterministic_per_file_and_variant():
    x = make_clip("speech", 2.0, 5)
    for kind in A.KINDS + ("over", "speed"):
        a, ta = A.augment(x, SR, kind, A.rng_for("s3://b/a.wav", 1), make_clip("music", 4.0, 6))
        b, tb = A.augment(x, SR, kind, A.rng_for("s3://b/a.wav", 1), make_clip("music", 4.0, 6))
        assert ta == tb and np.array_equal(a, b) and len(a) == len(x) and np.abs(a).max() <= 1.0
    with pytest.raises(ValueError, match="unknown augmentation"):
        A.augment(x, SR, "reverb", A.rng_for("x", 0))
    with pytest.raises(ValueError, match="invalid augment config"):
        A.AugmentConfig(variants=1, kinds=("reverb",))


def test_level_steps_lower_all_but_one_stretch_by_what_they_say():
    x = np.random.default_rng(3).standard_normal(SR * 30).astype(np.float32) * 0.1
    for seed in range(20):
        y, gains = A.level_steps(x, SR, np.random.default_rng(seed), max_drop_db=30.0)
        assert len(y) == len(x) and 2 <= len(gains) <= 4
        assert max(gains) == 0.0 and min(gains) >= -30.0 and gains.count(0.0) >= 1
        g = np.abs(y) / np.maximum(np.abs(x), 1e-12)                   # the gain applied, sample by sample
        steps = np.flatnonzero(np.abs(np.diff(g)) > 1e-6) + 1          # only at the ramps
        db = 20 * np.log10(g)
        runs = np.split(db, steps)                                     # stretches of one gain (and the ramps)
        long = [float(np.median(r)) for r in runs if len(r) >= 0.9 * SR]   # >= 1 s less the ramps
        assert len(long) == len(gains) and np.allclose(long, gains, atol=1e-3)
    short, gains = A.level_steps(x[: SR * 3 // 2], SR, np.random.default_rng(0))   # < two 1 s stretches: as it was
    assert gains == [0.0] and np.array_equal(short, x[: SR * 3 // 2])


def test_level_steps_come_on_top_of_the_condition_and_are_tagged(tmp_path):
    import soundfile as sf

    from model import FeatureConfig
    from pipelines.featurize_rows import file_rows

    p = str(tmp_path / "a.wav")
    sf.write(p, make_clip("speech", 30.0, 2), SR)
    item, cfg, banks = {"uri": p, "label": "speech", "split": "train"}, FeatureConfig(), {"music": [], "noise": []}
    rows = {lp: list(file_rows(item, cfg, A.AugmentConfig(variants=8, kinds=("eq",), level_prob=lp), banks, None))
            for lp in (0.0, 0.5, 1.0)}
    assert [t for t, _, _ in rows[0.0]] == [""] + [f"{v}:eq" for v in range(1, 9)]
    assert [t for t, _, _ in rows[1.0]] == [""] + [f"{v}:eq+level" for v in range(1, 9)]
    assert 0 < sum(t.endswith("+level") for t, _, _ in rows[0.5]) < 8
    for (t0, _, a), (t5, _, b) in zip(rows[0.0], rows[0.5]):          # the same condition draws either way
        assert np.array_equal(a, b) == (not t5.endswith("+level"))
    sf.write(p, make_clip("speech", 1.5, 2), SR)                     # too short to step: the tag says so
    assert [t for t, _, _ in file_rows(item, cfg, A.AugmentConfig(variants=2, kinds=("eq",), level_prob=1.0),
                                       banks, None)] == ["", "1:eq", "2:eq"]
    with pytest.raises(ValueError, match="level_prob"):
        A.AugmentConfig(level_prob=1.5)


def test_level_steps_are_off_by_default_and_leave_the_stored_config_as_before():
    assert A.AugmentConfig().level_prob == 0.0
    assert set(A.AugmentConfig(variants=2).to_dict()) == {"variants", "kinds", "snr_db", "over_snr_db", "seed"}
    on = A.AugmentConfig(variants=2, level_prob=0.5)
    assert A.AugmentConfig.from_dict(on.to_dict()) == on and on.to_dict()["level_prob"] == 0.5


def tone(hz: float, seconds: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(SR * seconds)) / SR)).astype(np.float32)


def test_montage_strings_a_full_window_from_the_recordings_given_each_at_its_own_level():
    x, others = tone(440, 3.0), [tone(1000, 5.0), tone(2000, 12.0)]
    y, k = A.montage(x, SR, others, np.random.default_rng(0), SR * 30)
    assert len(y) == SR * 30 and k >= 4                              # 2-8 s pieces fill 30 s
    f = np.fft.rfftfreq(len(y), 1 / SR)
    X = np.abs(np.fft.rfft(y)) ** 2
    near = lambda hz: X[np.abs(f - hz) < 30].sum() / X.sum()          # noqa: E731
    assert near(440) > 0.02 and near(440) + near(1000) + near(2000) > 0.99   # its own audio and the others', nothing else
    frames = np.sqrt(np.mean(y.reshape(-1, SR // 10) ** 2, axis=1))   # 100 ms frames
    db = 20 * np.log10(frames / (0.5 / np.sqrt(2)))                  # against the tones' own level
    assert db.max() < 0.01 and db.min() > -10 - 2                    # lowered by 0-10 dB; no gap (10 ms ramps)
    assert np.ptp(db) > 3                                            # the pieces' levels differ
    again, _ = A.montage(x, SR, others, np.random.default_rng(0), SR * 30)
    assert np.array_equal(y, again)
    alone, _ = A.montage(x, SR, [], np.random.default_rng(1), SR * 10)   # a source of one file: pieces of it
    Xa = np.abs(np.fft.rfft(alone)) ** 2
    fa = np.fft.rfftfreq(len(alone), 1 / SR)
    assert len(alone) == SR * 10 and Xa[np.abs(fa - 440) < 30].sum() / Xa.sum() > 0.99


def test_montage_draws_other_files_of_the_same_label_and_source_only(tmp_path):
    import soundfile as sf

    from model import FeatureConfig
    from pipelines.featurize_rows import copy_plans, file_rows
    from pipelines.inputs import mixing_banks

    def item(name, label, source, split="train", seconds=3.0):
        p = str(tmp_path / name)
        sf.write(p, make_clip(label, seconds, len(name)), SR)
        return {"uri": p, "label": label, "split": split, "source": source}

    items = [item(f"a{i}.wav", "speech", "A") for i in range(10)] + [
        item("b.wav", "speech", "B"), item("m.wav", "music", "A"), item("t.wav", "speech", "A", "test")]
    banks = mixing_banks(items, montage=True)
    assert "montage" in banks and mixing_banks(items)["montage"] == {}
    aug = A.AugmentConfig(variants=4, kinds=("montage",))
    same = {it["uri"] for it in items[:10]}
    for it in items[:10]:
        for v, kind, files in copy_plans(it, aug, banks):
            assert kind == "montage" and 1 <= len(files) <= 7 and set(files) <= same - {it["uri"]}
    assert copy_plans(items[-1], aug, banks) == []                   # the test split is never augmented
    rows = list(file_rows(items[0], FeatureConfig(), aug, banks, None))
    assert [t for t, _, _ in rows] == ["", "1:montage", "2:montage", "3:montage", "4:montage"]
    cfg = FeatureConfig()
    assert rows[0][1].n == 3 * SR and all(w.n == cfg.window_samples for _, w, _ in rows[1:])
    assert all(ix.shape == rows[0][2].shape for _, _, ix in rows)
