"""Run the peer segmenter inaSpeechSegmenter (engine `smn`) over a list of WAVs and time it.

Runs ONLY under its own venv (/work/ina-venv, see benchmarks/PEER.md); it imports nothing from this
project, so the project never depends on TensorFlow or on ina:

    /work/ina-venv/bin/python -I benchmarks/peer_ina.py --wavs LIST.txt --out OUT.json [--threads N]

LIST.txt: one audio path per line (WAV, or anything libsndfile reads, e.g. Ogg Vorbis; any rate, any channel
count; blank lines and lines starting with # are skipped). Files that are not 16 kHz mono WAVs are decoded, mixed
down and resampled here (scipy.signal.resample_poly) into a temporary 16-bit WAV, which is what ina's own ffmpeg
path feeds it (pcm_s16le, 16 kHz, mono): ina without ffmpeg reads only 16 kHz WAVs. OUT.json (written once,
atomically; an existing one is never overwritten):

    {"segments": {path: [[label, start_s, end_s], ...]},   labels: speech, music, noise, noEnergy
     "errors": {path: message},                            a file that fails does not stop the others
     "audio_s": total seconds of the files segmented,
     "wall_s": process start to end (TensorFlow import + model load + all files),
     "load_s": TensorFlow import + Segmenter construction, "segment_s": all files (read, resample, segment),
     "x_realtime_with_load": audio_s / wall_s, "x_realtime_without_load": audio_s / segment_s,
     "per_file_s": {path: seconds}, "versions": {...}, "threads": N or null}
"""

import time

T0 = time.perf_counter()  # before the heavy imports: the with-load figure includes importing TensorFlow

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

# This file sits in the project's benchmarks/ (which holds label.py, featurize.py ...): never let its folder
# shadow a module that TensorFlow or ina imports. `python -I` already leaves it out; this covers a plain run.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines drown the output

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from scipy.signal import resample_poly  # noqa: E402

SR = 16000


def read_list(path: str) -> list[str]:
    """The WAV paths of LIST.txt, in order; a missing file is an error naming it and the list."""
    with open(path, encoding="utf-8") as f:
        paths = [ln.strip() for ln in f if ln.strip() and not ln.strip().startswith("#")]
    if not paths:
        raise SystemExit(f"--wavs {path}: no paths in it")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"--wavs {path}: {len(missing)} paths do not exist, first: {missing[0]}")
    if len(set(paths)) != len(paths):
        raise SystemExit(f"--wavs {path}: a path is listed twice (the output is keyed by path)")
    return paths


def as_16k_mono(path: str, tmp_dir: str) -> tuple[str, float]:
    """(a 16 kHz mono WAV of path: itself when it already is one, else a temporary copy; its seconds).
    ina reads a WAV itself and hands anything else to ffmpeg, which it runs without here."""
    info = sf.info(path)
    seconds = info.frames / info.samplerate
    if info.samplerate == SR and info.channels == 1 and info.format == "WAV":
        return path, seconds
    sig, sr = sf.read(path, dtype="float64", always_2d=True)
    sig = sig.mean(axis=1)
    if sr != SR:
        g = math.gcd(SR, sr)
        sig = resample_poly(sig, SR // g, sr // g)
    out = os.path.join(tmp_dir, "in16k.wav")  # one file at a time: each overwrites the last
    sf.write(out, np.clip(sig, -1.0, 1.0), SR, subtype="PCM_16")
    return out, seconds


MODEL = "keras_speech_music_noise_cnn.hdf5"


def load_segmenter(threads: int | None):
    """ina's Segmenter as the brief fixes it: smn engine, no gender model, no ffmpeg (we resample)."""
    # ina looks in /root/.keras/inaSpeechSegmenter/, then downloads to ~/.keras/... from GitHub, which this
    # machine cannot reach: say which file is missing instead of a download error
    homes = {os.path.expanduser("~/.keras"), "/root/.keras", os.environ.get("KERAS_HOME", "~/.keras")}
    if not any(os.access(os.path.join(h, "inaSpeechSegmenter", MODEL), os.R_OK) for h in homes):
        raise SystemExit(f"{MODEL} is not in ~/.keras/inaSpeechSegmenter/: copy it there from "
                         f"shared/anchors/inaSpeechSegmenter/ (benchmarks/PEER.md)")
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from inaSpeechSegmenter import Segmenter

    return Segmenter(vad_engine="smn", detect_gender=False, ffmpeg=None)


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("inaspeechsegmenter", "tensorflow-cpu", "keras", "numpy", "scipy")}


def segment_all(seg, paths: list[str]) -> dict:
    """Segments, errors, per-file seconds and total audio seconds of every path."""
    segments, errors, per_file, audio_s = {}, {}, {}, 0.0
    with tempfile.TemporaryDirectory(prefix="peer_ina_") as tmp:
        for path in paths:
            t = time.perf_counter()
            try:
                wav16, seconds = as_16k_mono(path, tmp)
                segs = seg(wav16)
            except Exception as e:  # one bad file must not cost the whole run: record it by name
                errors[path] = f"{type(e).__name__}: {e}"
                continue
            segments[path] = [[lab, round(float(a), 2), round(float(b), 2)] for lab, a, b in segs]
            audio_s += seconds
            per_file[path] = round(time.perf_counter() - t, 3)
    return {"segments": segments, "errors": errors, "per_file_s": per_file, "audio_s": audio_s}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wavs", required=True, help="text file: one WAV path per line")
    ap.add_argument("--out", required=True, help="JSON to write (must not exist yet)")
    ap.add_argument("--threads", type=int, default=None, help="TensorFlow intra/inter-op threads (default: TF's)")
    a = ap.parse_args(argv)
    if os.path.exists(a.out):
        raise SystemExit(f"--out {a.out} exists: refusing to overwrite a finished result")
    paths = read_list(a.wavs)
    seg = load_segmenter(a.threads)
    t_seg = time.perf_counter()
    res = segment_all(seg, paths)
    t_end = time.perf_counter()
    wall, segment_s, load_s = t_end - T0, t_end - t_seg, t_seg - T0
    res.update(wall_s=round(wall, 3), load_s=round(load_s, 3), segment_s=round(segment_s, 3),
               audio_s=round(res["audio_s"], 3), threads=a.threads, versions=versions(),
               x_realtime_with_load=round(res["audio_s"] / wall, 2),
               x_realtime_without_load=round(res["audio_s"] / segment_s, 2) if segment_s > 0 else None)
    tmp = f"{a.out}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, a.out)
    print(f"ina smn: {len(res['segments'])} files ok, {len(res['errors'])} failed, {res['audio_s']:.1f} audio-s; "
          f"wall {wall:.1f} s (load {load_s:.1f} s) = {res['x_realtime_with_load']}x realtime with load, "
          f"{res['x_realtime_without_load']}x without -> {a.out}")
    if res["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
