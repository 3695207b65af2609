"""featurize and label on a folder of media made here with PyAV (MP4 with AAC and a video track, M4A, Ogg
Opus, WebM Opus, stereo 48 kHz MKV) beside the WAVs they were made from, plus files that cannot be decoded:
the media give the WAVs' results within codec tolerance, the bad files are error rows naming them."""

import os

import numpy as np
import pyarrow.parquet as pq

from pipelines import featurize as featurize_job
from pipelines import shards
from pipelines import label as label_job
from pipelines.demo import wav_bytes
from tests.pipelines.mediafiles import MEDIA, source, write_media, write_video_only


def make_folder(root: str, seconds: float) -> tuple[dict, set]:
    """Each media file and the WAV it was made from, music and speech in turn; plus a file neither library
    reads and a video without audio. Returns ({media uri: (wav uri, kind)}, {bad uris})."""
    os.makedirs(root, exist_ok=True)
    pairs = {}
    for k, (name, (container, codec, sr, _, video, _)) in enumerate(MEDIA.items()):
        kind = ("music", "speech")[k % 2]
        x, _ = source(name, kind, seconds, 40 + k)
        stem, ext = os.path.splitext(name)
        wav = os.path.join(root, f"{kind}-{ext[1:]}-source.wav")
        with open(wav, "wb") as f:
            f.write(wav_bytes(x, sr))
        pairs[write_media(os.path.join(root, f"{kind}-{stem}{ext}"), x, sr, container, codec, video)] = (wav, kind)
    junk = os.path.join(root, "junk.mkv")
    with open(junk, "wb") as f:
        f.write(np.random.default_rng(1).bytes(40_000))
    return pairs, {junk, write_video_only(os.path.join(root, "no-audio.mp4"))}


def test_featurize_media_like_their_wavs(ray_local, tmp_path):
    audio, out = str(tmp_path / "media"), str(tmp_path / "features")
    pairs, bad = make_folder(audio, 9.5)                     # 9.5 s: two 5 s windows, AAC's padding included
    assert featurize_job.main(["--input", audio, "--output", out, "--window-seconds", "5",
                               "--files-per-task", "1"]) == 0
    rows = {}
    for r in featurize_job.read_rows(out).to_pylist():
        rows.setdefault(r["uri"], []).append(r)
    assert set(rows) == set(pairs) | {w for w, _ in pairs.values()}
    errors = pq.read_table(os.path.join(out, "errors.parquet")).to_pylist()
    assert {e["uri"] for e in errors} == bad and all(e["uri"] in e["error"] for e in errors)
    for media, (wav, _) in pairs.items():
        m, w = (sorted(rows[u], key=lambda r: r["window_start"]) for u in (media, wav))
        assert len(m) == len(w) == 2, media
        for i, (a, b) in enumerate(zip(m, w)):
            assert (a["sample_rate"], a["channels"]) == (b["sample_rate"], b["channels"]), media
            # the last window ends at the file's end: AAC's padding (< 50 ms) moves it by as much
            assert 0 <= a["window_start"] - b["window_start"] < 0.05 and a["window_duration"] == b["window_duration"]
            if i == len(m) - 1 and a["window_start"] != b["window_start"]:
                continue                                          # not the same audio: no pixel comparison
            x, y = (shards.index_of(r).astype(int) for r in (a, b))
            d, loud = np.abs(x - y), y >= 96                 # loud: within 50 dB of the window's peak
            # measured: loud pixels within 8 steps (2.5 dB) 0.98-1.00, all within 16 steps 0.90-1.00,
            # mean |step| 0.8-5.0 (Opus's noise fill in the quiet bands of music is the largest)
            assert (d[loud] <= 8).mean() > 0.97 and (d <= 16).mean() > 0.85 and d.mean() < 8, (media, d.mean())


def test_label_media_like_their_wavs(ray_local, trained, tmp_path, capsys):  # noqa: F811
    model, _, _ = trained
    audio, out = str(tmp_path / "media"), str(tmp_path / "labels")
    pairs, bad = make_folder(audio, 8.0)
    assert label_job.main(["--input", audio, "--model", model, "--output", out,
                           "--actors", "1", "--batch-size", "4"]) == 0
    n = 2 * len(pairs) + len(bad)
    assert f"label: done: {n} files" in capsys.readouterr().out
    files = {r["uri"]: r for r in pq.read_table(os.path.join(out, "files.parquet")).to_pylist()}
    assert set(files) == set(pairs) | {w for w, _ in pairs.values()} | bad
    for uri in bad:
        assert files[uri]["status"] == "error" and uri in files[uri]["error"] and files[uri]["label"] is None
    segs = pq.read_table(os.path.join(out, "segments.parquet")).to_pylist()
    for media, (wav, kind) in pairs.items():
        m, w = files[media], files[wav]
        assert m["status"] == w["status"] == "ok" and m["label"] == w["label"] == kind, (m, w)
        assert abs(m["fraction_music"] - w["fraction_music"]) < 0.05, (m, w)
        assert 0 <= m["duration"] - w["duration"] < 0.05
        assert [s["label"] for s in segs if s["uri"] == media] == [s["label"] for s in segs if s["uri"] == wav]
