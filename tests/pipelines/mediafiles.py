"""Media files made in the tests by PyAV itself (the binding the decoder uses), from generated audio, and
the comparison of a decoded media file with the signal it was made from."""

import fractions
import os

import numpy as np

from pipelines.demo import make_clip

# name -> (container, audio codec, sample rate, channels, with a video track, decoded by)
MEDIA = {
    "clip.mp4": ("mp4", "aac", 22050, 1, True, "FFmpeg"),
    "clip.m4a": ("ipod", "aac", 44100, 1, False, "FFmpeg"),
    "clip.opus": ("ogg", "libopus", 48000, 1, False, "libsndfile"),      # libsndfile reads Ogg Opus itself
    "clip.webm": ("webm", "libopus", 48000, 1, False, "FFmpeg"),
    "clip.mkv": ("matroska", "aac", 48000, 2, True, "FFmpeg"),
}


def source(name: str, kind: str, seconds: float, seed: int) -> tuple[np.ndarray, int]:
    """The generated signal a media file is made from, at the file's own rate: (T,) or (T, 2), and its rate."""
    _, _, sr, ch, _, _ = MEDIA[name]
    if ch == 1:
        return make_clip(kind, seconds, seed, sr=sr), sr
    left, right = make_clip(kind, seconds, seed, sr=sr), make_clip(kind, seconds, seed + 1, sr=sr)
    return np.stack([left, 0.5 * right], axis=1).astype(np.float32), sr


def write_media(path: str, x: np.ndarray, sr: int, container: str, codec: str, video: bool = False) -> str:
    """Encode x ((T,) or (T, channels) float32 at sr, sent at its own rate) into `container`; with video, a
    small MPEG-4 picture track at 10 frames/s is muxed in too. Returns path."""
    import av

    x = np.asarray(x, np.float32).reshape(len(x), -1).T                # (channels, T)
    layout = "mono" if x.shape[0] == 1 else "stereo"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with av.open(path, "w", format=container) as c:
        if video:
            v = c.add_stream("mpeg4", rate=10)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream(codec, rate=sr, layout=layout)
        a.bit_rate = 128000 * x.shape[0]
        frames, shown = 0, 0
        for i in range(0, x.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, i:i + 1024]), format="fltp", layout=layout)
            f.sample_rate, f.pts, f.time_base = sr, i, fractions.Fraction(1, sr)
            for p in a.encode(f):
                c.mux(p)
            while video and shown * sr <= (i + 1024) * 10:
                _mux_picture(c, v, shown)
                shown += 1
        for p in a.encode(None):
            c.mux(p)
        if video:
            for p in v.encode(None):
                c.mux(p)
    return path


def write_video_only(path: str, seconds: float = 2.0) -> str:
    import av

    with av.open(path, "w", format="mp4") as c:
        v = c.add_stream("mpeg4", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for k in range(int(seconds * 10)):
            _mux_picture(c, v, k)
        for p in v.encode(None):
            c.mux(p)
    return path


def _mux_picture(c, v, k: int) -> None:
    import av

    img = np.full((48, 64, 3), (k * 37) % 256, np.uint8)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts = k
    for p in v.encode(frame):
        c.mux(p)


def aligned_correlation(y: np.ndarray, ref: np.ndarray, max_lag: int = 4096) -> tuple[float, int]:
    """(correlation, lag) of y against ref after the best shift within +-max_lag samples (lag > 0: y is
    late). Compares the overlap only, so codec padding at either end does not count."""
    n = len(ref)
    spec = np.fft.rfft(y[:n], 2 * n) * np.conj(np.fft.rfft(ref, 2 * n))
    cc = np.fft.irfft(spec, 2 * n)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    lag = int(lags[np.argmax(cc[lags])])
    a, b = (y[lag:], ref) if lag >= 0 else (y, ref[-lag:])
    m = min(len(a), len(b))
    return float(np.corrcoef(a[:m], b[:m])[0, 1]), lag
