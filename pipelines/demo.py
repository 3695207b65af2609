"""Generated demo audio in the seed's layout: <out>/{train,test}/{music,speech}/*.wav.

Music-like clips: notes with harmonics and decaying envelopes on a beat grid, chords and a bass line.
Speech-like clips: voiced syllables (glottal pulse train through three formant resonators) with gliding
pitch contours, unvoiced noise bursts and pauses between words. Deterministic from a seed. This feeds
the README's first command and the tests; the real benchmark set is ../shared/data/music_speech.

    python pipelines/demo.py OUT [--per-class 8] [--seconds 10] [--seed 0] [--long 120]
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines import storage  # noqa: E402

SR = 22050


def _envelope(n: int, attack: float, decay: float, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)


def music_clip(seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Notes with harmonics on a steady beat, chords and a bass line: sustained horizontal partials."""
    n = int(seconds * sr)
    out = np.zeros(n)
    bpm = rng.uniform(80, 150)
    beat = 60.0 / bpm
    root = rng.uniform(110, 330)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    n_harm = int(rng.integers(3, 8))
    bright = rng.uniform(0.5, 0.9)
    t0 = 0.0
    while t0 < seconds:
        dur = beat * rng.choice([0.5, 1, 1, 2])
        m = int(dur * sr * 1.5)
        i0 = int(t0 * sr)
        m = min(m, n - i0)
        if m <= 0:
            break
        tt = np.arange(m) / sr
        env = _envelope(m, 0.01, dur * rng.uniform(0.5, 1.5), sr)
        # a chord of 1-3 notes from the scale, each with harmonics
        for deg in rng.choice(scale, size=int(rng.integers(1, 4)), replace=False):
            f = root * 2 ** (deg / 12)
            for h in range(1, n_harm + 1):
                if f * h < sr / 2 - 500:
                    out[i0:i0 + m] += env * bright ** (h - 1) * np.sin(2 * np.pi * f * h * tt + rng.uniform(0, 6.3)) / 3
        # bass an octave and a fifth below on each beat
        fb = root / 2 * 2 ** (rng.choice([0, 7]) / 12)
        out[i0:i0 + m] += 0.5 * env * np.sin(2 * np.pi * fb * tt)
        # percussion: a short noise click on the beat
        k = min(int(0.03 * sr), m)
        out[i0:i0 + k] += rng.uniform(0.1, 0.4) * rng.standard_normal(k) * np.exp(-np.arange(k) / (0.005 * sr))
        t0 += dur
    return out


def _resonator(x: np.ndarray, f: float, bw: float, sr: int) -> np.ndarray:
    """Two-pole resonant filter (one formant)."""
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bw / sr)
    return lfilter([1 - r], [1.0, -2 * r * np.cos(2 * np.pi * f / sr), r * r], x)


VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410),
          (640, 1190, 2390), (440, 1020, 2240), (490, 1350, 1690)]


def speech_clip(seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Words of voiced syllables (formant-filtered glottal pulses with gliding pitch), unvoiced
    consonant bursts and pauses: the fast-changing, harmonic-but-gliding texture of speech."""
    n = int(seconds * sr)
    out = np.zeros(n)
    f0_base = rng.uniform(90, 230)
    i = int(rng.uniform(0.0, 0.3) * sr)
    while i < n:
        for _ in range(int(rng.integers(1, 5))):            # syllables in a word
            if i >= n:
                break
            # unvoiced consonant: a short band of noise
            k = int(rng.uniform(0.02, 0.08) * sr)
            k = min(k, n - i)
            if rng.random() < 0.6 and k > 0:
                noise = rng.standard_normal(k) * np.hanning(k) * 0.15
                out[i:i + k] += _resonator(noise, rng.uniform(2500, 5000), 1500, sr) * 8
                i += k
            # voiced vowel with a pitch glide
            m = min(int(rng.uniform(0.08, 0.25) * sr), n - i)
            if m <= 0:
                break
            f0 = f0_base * np.linspace(rng.uniform(0.85, 1.2), rng.uniform(0.8, 1.15), m)
            phase = np.cumsum(f0 / sr)
            pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
            src = np.convolve(pulses, np.exp(-np.arange(40) / 6.0))[:m]
            v1, v2 = VOWELS[rng.integers(len(VOWELS))], VOWELS[rng.integers(len(VOWELS))]
            seg = np.zeros(m)
            for j, bw in zip(range(3), (80, 100, 150)):
                # formants move from one vowel to the next (co-articulation), in 4 pieces
                for q in range(4):
                    a, b = q * m // 4, (q + 1) * m // 4
                    f = v1[j] + (v2[j] - v1[j]) * (q + 0.5) / 4
                    seg[a:b] += _resonator(src[a:b], f, bw, sr) / (j + 1)
            out[i:i + m] += seg * np.hanning(m) * rng.uniform(0.5, 1.0)
            i += m
        i += int(rng.uniform(0.1, 0.5) * sr)                  # pause between words
    return out


def noise_clip(seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Ambience: colored noise under a slow random swell (rain, wind, traffic) with sparse clicks (drops,
    steps): broadband, no harmonics, no syllable rhythm."""
    n = int(seconds * sr)
    w = np.fft.rfft(rng.standard_normal(n))
    w /= np.maximum(np.arange(len(w)), 1) ** (rng.uniform(0.0, 1.5) / 2)          # white .. brownish
    x = np.fft.irfft(w, n=n)
    knots = rng.uniform(0.4, 1.0, int(seconds) + 2)
    x *= np.interp(np.arange(n) / sr, np.arange(len(knots)), knots)
    for i in rng.integers(0, max(1, n - 200), int(seconds * rng.uniform(2, 20))):
        k = min(200, n - i)
        x[i:i + k] += rng.uniform(0.5, 3) * np.std(x) * rng.standard_normal(k) * np.exp(-np.arange(k) / 30)
    return x


def _normalize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    peak = np.max(np.abs(x)) or 1.0
    return (x / peak * rng.uniform(0.3, 0.9)).astype(np.float32)


def make_clip(kind: str, seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    make = {"music": music_clip, "speech": speech_clip, "noise": noise_clip}[kind]
    x = make(seconds, rng, sr)
    x = x + rng.standard_normal(len(x)) * 1e-3                # a little background noise
    return _normalize(x, rng)


def wav_bytes(x: np.ndarray, sr: int = SR, fmt: str = "WAV") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype="PCM_16" if fmt == "WAV" else None)
    return buf.getvalue()


def make_long(parts: list[tuple[str, float]], seed: int, sr: int = SR) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Concatenate generated parts [(kind, seconds)] -> (audio, [(start, end, kind)] ground truth)."""
    xs, truth, t = [], [], 0.0
    for i, (kind, sec) in enumerate(parts):
        xs.append(make_clip(kind, sec, seed * 1000 + i, sr))
        truth.append((t, t + sec, kind))
        t += sec
    return np.concatenate(xs), truth


def write_demo(out: str, per_class: int = 8, seconds: float = 10.0, seed: int = 0, test_fraction: float = 0.25,
               s3: storage.S3Options | None = None) -> list[str]:
    """Write per_class clips of each class, split train/test; returns the URIs written."""
    n_test = max(1, int(round(per_class * test_fraction))) if per_class > 1 else 0
    uris = []
    for ci, kind in enumerate(("music", "speech")):
        for k in range(per_class):
            split = "test" if k < n_test else "train"
            uri = storage.join(out, split, kind, f"{kind}-{k:03d}.wav")
            x = make_clip(kind, seconds, seed * 100_000 + ci * 10_000 + k)
            storage.write_bytes(uri, wav_bytes(x), s3)
            uris.append(uri)
    return uris


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write a generated, labeled music/speech demo set in the seed's layout "
                                            "(OUT/{train,test}/{music,speech}/*.wav).")
    p.add_argument("out", help="output folder or s3:// prefix")
    p.add_argument("--per-class", type=int, default=8, help="clips per class (default 8)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip in seconds (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--long", type=float, default=0.0, metavar="SECONDS",
                   help="also write OUT/long/demo-long.wav of alternating speech/music parts, with its "
                        "ground truth in demo-long.csv (default: none)")
    a = p.parse_args(argv)
    uris = write_demo(a.out, a.per_class, a.seconds, a.seed)
    msg = f"wrote {len(uris)} clips of {a.seconds:g} s to {a.out}"
    if a.long > 0:
        rng = np.random.default_rng(a.seed)
        parts, total = [], 0.0
        while total < a.long:
            sec = float(min(rng.uniform(8, 25), a.long - total))
            parts.append(("speech" if len(parts) % 2 == 0 else "music", sec))
            total += sec
        x, truth = make_long(parts, a.seed + 7)
        storage.write_bytes(storage.join(a.out, "long", "demo-long.wav"), wav_bytes(x))
        csv = "start,end,label\n" + "".join(f"{s:.3f},{e:.3f},{k}\n" for s, e, k in truth)
        storage.write_bytes(storage.join(a.out, "long", "demo-long.csv"), csv.encode())
        msg += f", and a {total:.0f} s long file with {len(parts)} parts"
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
