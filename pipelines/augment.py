"""Archive-condition augmentation of the *audio*, before the representation.

The representation is normalized per window (dB relative to the window's maximum, then min-max), so
damage applied to the uint8 index is not what a band-limited or noisy recording looks like after that
normalization: the conditions are applied to the waveform and the result is featurized as any file.

    band      resample to 8 / 11.025 / 16 kHz and back (telephone, AM, old tape, low-rate archives)
    phone     telephone channel: 300-3400 Hz band-pass, 8 kHz, 8-bit mu-law
    noise     additive noise from the noise data (or generated) at a random SNR
    codec     a real lossy codec round trip at a low bitrate: MP3 (LAME) or Ogg Vorbis (libsndfile)
    eq        random gain and spectral tilt / one peaking band
    over      speech over music (the music is the "noise", the label stays speech)
    speed     played at the wrong speed: resampled by a factor of 0.7..1.4 (log-uniform), tempo and pitch
              together, as a tape or disc run off speed (opt-in: not in featurize's default kinds)
    montage   a full window strung from 2-8 s pieces of the file and of other files of its label *and source*
              (voices and levels changing every few seconds, as in a talk show, vox pops or a DJ's set; one
              source, so leave-source-out folds stay apart), each piece at its own level (opt-in). A corpus
              clip of 3 s is otherwise a window of its own, normalized alone: training never saw several
              recordings share one window's normalization, which labeling an archive does all the time.

and, on top of any of them (before the condition, as a programme's own level changes come before the
channel), with probability `level_prob`:

    level     level steps: the window cut into 2-4 stretches of >= 1 s, each but one lowered by 0..level_db dB
              (20 ms ramps). A quiet announcer after a loud record shares a window's normalization with it:
              GTZAN's speech-26 (~20 dB RMS below its neighbours) was called music inside a robustness
              timeline and speech on its own. Off by default: at 0.5 it took that speech back and called
              music speech instead (README, Real archives; robustness-level*.json).

`augment(x, sr, kind, rng, noise)` is pure given its inputs: the featurize job draws the kind and the
seed from the file's URI and variant number, so a rerun (or --resume) writes the same rows.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import numpy as np

KINDS = ("band", "phone", "noise", "codec", "eq")
OPT_IN = ("over", "speed", "montage")   # drawn only when asked for ('over' by featurize's defaults)


@dataclass(frozen=True)
class AugmentConfig:
    """variants: augmented copies per labeled file (0: none), each one kind drawn from `kinds` (with
    an 'over' copy for speech when music is available). SNRs in dB."""
    variants: int = 0
    kinds: tuple = KINDS
    snr_db: tuple = (0.0, 20.0)
    over_snr_db: tuple = (0.0, 15.0)
    seed: int = 0
    level_prob: float = 0.0
    level_db: float = 30.0

    def __post_init__(self):
        bad = set(self.kinds) - set(KINDS) - set(OPT_IN)
        if bad or self.variants < 0 or not self.kinds:
            raise ValueError(f"invalid augment config: variants={self.variants}, kinds={self.kinds} "
                             f"(known: {KINDS + OPT_IN})")
        if not 0.0 <= self.level_prob <= 1.0:
            raise ValueError(f"level_prob (--augment-level-prob) must be in [0, 1], got {self.level_prob}")
        if self.level_db < 0:
            raise ValueError(f"level_db must be >= 0 (dB of drop), got {self.level_db}")

    def to_dict(self) -> dict:
        d = {"variants": self.variants, "kinds": list(self.kinds), "snr_db": list(self.snr_db),
             "over_snr_db": list(self.over_snr_db), "seed": self.seed}
        # off, the level keys are left out: features made before they existed still --resume (same rows)
        return {**d, "level_prob": self.level_prob, "level_db": self.level_db} if self.level_prob else d

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def rng_for(uri: str, variant: int, seed: int = 0, window: int | None = None, stream: str = "") -> np.random.Generator:
    """The same generator for the same (file, copy[, window][, stream]) in every run and on every worker;
    another `stream` ("level") draws apart, so adding it leaves the conditions' own draws as they were."""
    return np.random.default_rng([zlib.crc32(uri.encode()), variant, seed, *([] if window is None else [window + 1]),
                                  *([zlib.crc32(stream.encode())] if stream else [])])


# ------------------------------------------------------------------------------------------------
# the conditions (waveform (T,) float32 at sr -> same length)

def _resample(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """A steep anti-aliasing resampler (librosa's kaiser_best settings): torchaudio's default (width 6,
    rolloff 0.99) leaves ~0.5% of white noise's energy above the new Nyquist, which a real 8 kHz
    recording does not have."""
    import torch
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(x, np.float32)), a, b,
                                          lowpass_filter_width=64, rolloff=0.9475937167399596,
                                          resampling_method="sinc_interp_kaiser", beta=14.769656459379492).numpy()


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32)


def band_limit(x: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """Resample to `rate` and back: nothing is left above rate / 2 (the resampler's low-pass)."""
    if rate >= sr:
        return x.astype(np.float32, copy=True)
    return _fit(_resample(_resample(x, sr, rate), rate, sr), len(x))


def telephone(x: np.ndarray, sr: int) -> np.ndarray:
    """300-3400 Hz band-pass (6th-order Butterworth), 8 kHz, 8-bit mu-law companding (G.711-like)."""
    from scipy.signal import butter, sosfilt

    y = _resample(x, sr, 8000) if sr != 8000 else x.astype(np.float32)
    y = sosfilt(butter(6, [300, 3400], btype="bandpass", fs=8000, output="sos"), y)
    peak = float(np.max(np.abs(y))) or 1.0
    mu = 255.0
    c = np.sign(y / peak) * np.log1p(mu * np.abs(y / peak)) / np.log1p(mu)   # compand
    c = np.round(c * 127.0) / 127.0                                          # 8 bits
    y = np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu * peak
    return _fit(_resample(y.astype(np.float32), 8000, sr) if sr != 8000 else y, len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """x + noise scaled so that 10 log10(P_x / P_noise) == snr_db (noise tiled or cut to len(x)).
    The sum is scaled down only if it would clip."""
    if len(noise) == 0 or rms(noise) == 0 or rms(x) == 0:
        return x.astype(np.float32, copy=True)
    n = np.resize(noise, len(x)).astype(np.float64)
    n *= rms(x) / rms(n) / (10.0 ** (snr_db / 20.0))
    y = x + n
    peak = float(np.max(np.abs(y)))
    return (y / peak * 0.99 if peak > 0.99 else y).astype(np.float32)


def encode(x: np.ndarray, rate: int, fmt: str, compression: float) -> bytes:
    """Mono float32 at `rate` -> MP3 (LAME, CBR) or Ogg Vorbis bytes at libsndfile's compression level
    (clipped to [0, 0.95]: 1.0 fails for MP3). Written in blocks of 4096 frames: one write call of a
    5-minute signal crashed libsndfile's Vorbis encoder (a segfault, stack overflow, measured here)."""
    import soundfile as sf

    fmt = fmt.lower()
    kw = {"mp3": dict(format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT"),
          "ogg": dict(format="OGG", subtype="VORBIS")}[fmt]
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, 1, compression_level=float(np.clip(compression, 0, 0.95)), **kw) as f:
        y = np.clip(x, -1, 1).astype(np.float32)
        for a in range(0, len(y), 4096):
            f.write(y[a:a + 4096])
    return buf.getvalue()


def codec(x: np.ndarray, sr: int, fmt: str, compression: float) -> np.ndarray:
    """A real lossy round trip through libsndfile (encode(), then decode): MP3 at 22.05 kHz measured
    59 kbit/s at compression 0.7, 25 at 0.9, 17 at 0.95."""
    import soundfile as sf

    rate = sr if sr in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000) else 16000
    z, _ = sf.read(io.BytesIO(encode(_resample(x, sr, rate) if rate != sr else x, rate, fmt, compression)),
                   dtype="float32")
    z = z.mean(axis=1) if z.ndim > 1 else z
    if rate != sr:
        z = _resample(z, rate, sr)
    return _fit(z, len(x))


def equalize(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Random gain (-20..+6 dB, clipped to full scale) and a random spectral tilt or peaking band."""
    X = np.fft.rfft(x.astype(np.float64))
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    octv = np.log2(np.maximum(f, 50.0) / 1000.0)                     # octaves from 1 kHz
    if rng.random() < 0.5:
        gain_db = rng.uniform(-4, 4) * octv                          # tilt, dB per octave
    else:
        fc, width, g = rng.uniform(np.log2(0.2), np.log2(6.0)), rng.uniform(0.5, 2.0), rng.uniform(-12, 12)
        gain_db = g * np.exp(-0.5 * ((octv - fc) / width) ** 2)
    y = np.fft.irfft(X * 10 ** (gain_db / 20), n=len(x)) * 10 ** (rng.uniform(-20, 6) / 20)
    return np.clip(y, -1, 1).astype(np.float32)


def level_steps(x: np.ndarray, sr: int, rng: np.random.Generator, max_drop_db: float = 30.0,
                min_seconds: float = 1.0, ramp_seconds: float = 0.02) -> tuple[np.ndarray, list[float]]:
    """Cut (T,) into 2-4 stretches of >= min_seconds at random points; one random stretch keeps its level,
    each other one is lowered by U(0, max_drop_db) dB, with linear ramps of ramp_seconds between gains.
    -> (the stepped audio, each stretch's gain in dB). Shorter than two stretches: returned unchanged.
    The minimum is 1 s because half the training windows are corpus clips under 3.9 s (measured on the
    recipe's features); at 2 s, half the stepped copies of the first try came out unchanged."""
    n, m = len(x), int(min_seconds * sr)
    k = min(int(rng.integers(2, 5)), n // max(m, 1))
    if k < 2:
        return x.astype(np.float32, copy=True), [0.0]
    free = n - k * m                                                  # samples left after the minimum lengths
    cuts = np.sort(rng.integers(0, free + 1, k - 1)) + m * np.arange(1, k)
    gains = -rng.uniform(0, max_drop_db, k)
    gains[int(rng.integers(k))] = 0.0
    edges = np.concatenate([[0], cuts, [n]])
    g = np.repeat(10 ** (gains / 20), np.diff(edges))
    r = max(1, int(ramp_seconds * sr))
    for c, a, b in zip(cuts, g[cuts - 1], g[cuts]):   # ramp centred on each cut (each >= min_seconds before the end)
        lo, hi = max(0, c - r // 2), min(n, c + r // 2)
        g[lo:hi] = np.linspace(a, b, hi - lo)
    return (x * g).astype(np.float32), [float(v) for v in gains]


SPEED_STEPS = 40   # the factor is rounded to n / 40: a ratio of two large coprimes (sr * 1.13 : sr) took
                   # the resampler 7.6 s per 30 s window against ~0.05 s for n / 40 (measured here)


def speed(x: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """x played `factor` (rounded to n / SPEED_STEPS) times as fast, tempo and pitch together, same length:
    slower keeps the first len(x) samples; faster repeats the sped-up audio to fill the length, so no
    silence appears that the recording does not have (featurize stores a window's length as real audio)."""
    a, b = int(round(factor * SPEED_STEPS)), SPEED_STEPS
    if a == b or len(x) == 0:
        return x.astype(np.float32, copy=True)
    g = np.gcd(a, b)
    y = _resample(x, a // g, b // g)                                # read at factor * sr, written at sr
    return np.resize(y, len(x)).astype(np.float32)


def montage(x: np.ndarray, sr: int, others: list, rng: np.random.Generator, n: int,
            piece_s: tuple = (2.0, 8.0), drop_db: float = 10.0) -> tuple[np.ndarray, int]:
    """(n samples strung from pieces, the number of pieces): one piece of x (at a random place among them)
    and pieces of x or of `others` (recordings of the same label and source) drawn at random, each 2-8 s (a
    shorter recording whole), lowered by 0..drop_db dB and ramped in and out over 10 ms."""
    pool = [a for a in [x, *others] if a is not None and len(a) >= sr // 10]
    if not pool:
        return np.zeros(n, np.float32), 0
    ramp = max(1, sr // 100)

    def piece(a):
        m = min(len(a), int(rng.uniform(*piece_s) * sr))
        start = int(rng.integers(0, len(a) - m + 1))
        y = a[start:start + m].astype(np.float64) * 10.0 ** (-rng.uniform(0.0, drop_db) / 20.0)
        r = min(ramp, m // 2)
        y[:r] *= np.linspace(0, 1, r)
        y[m - r:] *= np.linspace(1, 0, r)
        return y

    own, parts = piece(pool[0]), []                                   # the file's own audio is always in it
    total = len(own)
    while total < n:
        parts.append(piece(pool[int(rng.integers(len(pool)))]))
        total += len(parts[-1])
    parts.insert(int(rng.integers(max(1, len(parts)))), own)           # never last: the last piece is cut to n
    y = np.concatenate(parts)
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    peak = float(np.max(np.abs(y)))
    return (y / peak * 0.99 if peak > 0.99 else y).astype(np.float32), len(parts)


def colored_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown noise when no recorded noise is at hand."""
    w = rng.standard_normal(n)
    beta = rng.choice([0.0, 1.0, 2.0])
    if beta:
        W = np.fft.rfft(w)
        W /= np.maximum(np.arange(len(W)), 1) ** (beta / 2)
        w = np.fft.irfft(W, n=n)
    return (w / (rms(w) or 1.0) * 0.1).astype(np.float32)


def augment(x: np.ndarray, sr: int, kind: str, rng: np.random.Generator, other: np.ndarray | None = None,
            cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, str]:
    """One condition on one waveform -> (augmented (T,), a short tag naming what was done).
    `other` is the noise (kind 'noise') or the music (kind 'over') to mix in."""
    if kind == "band":
        rate = int(rng.choice([8000, 11025, 16000]))
        return band_limit(x, sr, rate), f"band{rate}"
    if kind == "phone":
        return telephone(x, sr), "phone"
    if kind in ("noise", "over"):
        lo, hi = cfg.snr_db if kind == "noise" else cfg.over_snr_db
        snr = float(rng.uniform(lo, hi))
        src = other if other is not None and len(other) else colored_noise(len(x), rng)
        if len(src) > len(x):                                         # a random stretch of a long one
            a = int(rng.integers(0, len(src) - len(x) + 1))
            src = src[a:a + len(x)]
        return mix_at_snr(x, src, snr), f"{kind}{snr:.0f}dB"
    if kind == "codec":
        fmt = str(rng.choice(["mp3", "ogg"]))
        c = float(rng.uniform(0.7, 0.95))
        return codec(x, sr, fmt, c), f"{fmt}c{c:.2f}"
    if kind == "eq":
        return equalize(x, sr, rng), "eq"
    if kind == "speed":
        f = round(float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))) * SPEED_STEPS) / SPEED_STEPS
        return speed(x, sr, f), f"speed{f:.3f}"
    raise ValueError(f"unknown augmentation {kind!r} (known: {tuple(k for k in KINDS + OPT_IN if k != 'montage')}; "
                     f"a montage is montage(), it needs other recordings)")
