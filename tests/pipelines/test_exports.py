"""Export formats: a long generated timeline written in every format and read back (TextGrid by praatio,
the others by their format's own grammar) to the same segments within 1 ms; names never collide; the
label job writes them all under OUT, locally and on S3."""

import json
import os
import re

import numpy as np
import pyarrow as pa
import pytest
from praatio import textgrid as praat_textgrid

from pipelines import exports, storage
from pipelines import label as job
from pipelines.demo import make_clip, wav_bytes
from tests.pipelines.test_label import run_job, write

LABELS = ("music", "speech", "noise", "silence")
URI = "s3://archive/radio 1977/side A/tape #3.wav"


def long_timeline(seed=0, n=200, hours=1.0, gaps=True):
    """n segments over `hours` with random boundaries on the ms grid; with gaps, every 7th is dropped
    (a hole in the timeline) and the file goes on past the last segment. Returns (segments, duration)."""
    rng = np.random.default_rng(seed)
    total_ms = int(hours * 3_600_000)
    cuts = np.sort(rng.choice(np.arange(1, total_ms), size=n, replace=False))
    edges = np.concatenate([[0], cuts]) / 1000.0
    segs = [(float(edges[i]), float(edges[i + 1]), LABELS[int(rng.integers(4))], float(rng.uniform(0.5, 1)))
            for i in range(n)]
    if gaps:
        segs = [s for i, s in enumerate(segs) if i % 7 != 3]
    return segs, total_ms / 1000.0


def assert_same(got, want, tol=1e-3):
    assert len(got) == len(want)
    for (a, b, l), (a0, b0, l0, _) in zip(got, want):
        assert l == l0 and abs(a - a0) <= tol and abs(b - b0) <= tol, ((a, b, l), (a0, b0, l0))


# ------------------------------------------------------------------------------------------------
# each format read back

def test_audacity_exact_tab_layout():
    segs, _ = long_timeline()
    text = exports.audacity(segs)
    assert text.endswith("\n") and not text.endswith("\n\n")
    lines = text.split("\n")[:-1]
    pat = re.compile(r"^(\d+\.\d{6})\t(\d+\.\d{6})\t([^\t\n]+)$")
    got = [(float(m[1]), float(m[2]), m[3]) for m in map(pat.match, lines)]
    assert_same(got, segs, tol=1e-6)
    assert lines[0] == f"{segs[0][0]:.6f}\t{segs[0][1]:.6f}\t{segs[0][2]}"


def test_textgrid_parsed_back_by_praatio(tmp_path):
    segs, duration = long_timeline()
    segs[5] = (*segs[5][:2], 'say "hi"', 0.9)                    # Praat doubles the quotes
    path = tmp_path / "x.TextGrid"
    path.write_text(exports.textgrid(segs, duration, URI), encoding="utf-8")
    tg = praat_textgrid.openTextgrid(str(path), includeEmptyIntervals=True, reportingMode="error")
    assert list(tg.tierNames) == ["music-speech"] and tg.minTimestamp == 0 and tg.maxTimestamp == duration
    iv = tg.getTier("music-speech").entries
    # Praat's rule: the intervals tile 0..duration exactly
    assert iv[0].start == 0 and iv[-1].end == duration
    assert all(x.end == y.start for x, y in zip(iv, iv[1:]))
    assert sum(1 for x in iv if x.label == "") >= 200 // 7 - 1     # the holes became empty intervals
    assert_same([(x.start, x.end, x.label) for x in iv if x.label != ""], segs, tol=1e-9)


def test_textgrid_closes_float_gaps_and_refuses_overlaps():
    text = exports.textgrid([(0.0, 1.0000000001, "music"), (1.0, 2.0, "speech")], 2.0)
    assert "intervals: size = 2" in text and text.count('text = ""') == 0
    with pytest.raises(ValueError, match="tape.wav: segments overlap at 0.500000"):
        exports.textgrid([(0.0, 1.0, "music"), (0.5, 2.0, "speech")], 2.0, "s3://b/tape.wav")


def test_rttm_ten_fields():
    segs, _ = long_timeline()
    fid = exports.export_name(URI, "")
    text = exports.rttm(segs, fid)
    got = []
    for line in text.splitlines():
        f = line.split(" ")
        assert len(f) == 10 and f == line.split(), line       # exactly 10 fields, single spaces
        assert f[0] == "SPEAKER" and f[1] == fid and f[2] == "1"
        assert f[5] == f[6] == f[8] == f[9] == "<NA>"
        got.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    assert " " not in fid and fid.endswith(".wav." + fid.rsplit(".", 1)[1])
    assert_same(got, segs)
    assert exports.rttm([(0, 1, "live music")], "my file").split()[1::6] == ["my_file", "live_music"]


def _parse_cues(text, sep):
    ts = rf"(\d{{2,}}):([0-5]\d):([0-5]\d){sep}(\d{{3}})"
    pat = re.compile(rf"^{ts} --> {ts}$")
    out = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        m = pat.match(lines[0 if sep == r"\." else 1])
        assert m, block
        g = [int(x) for x in m.groups()]
        out.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
                    lines[-1], lines[0]))
    return out


def test_srt_timestamps():
    segs, _ = long_timeline(1)
    cues = _parse_cues(exports.srt(segs), ",")
    assert [c[3] for c in cues] == [str(i) for i in range(1, len(segs) + 1)]   # numbered from 1
    assert_same([c[:3] for c in cues], segs)
    assert exports.srt([(3723.4567, 3723.9, "speech")]).split("\n")[1] == "01:02:03,457 --> 01:02:03,900"


def test_webvtt_timestamps():
    segs, _ = long_timeline(2)
    text = exports.vtt(segs)
    assert text.startswith("WEBVTT\n\n")
    assert_same([c[:3] for c in _parse_cues(text[len("WEBVTT\n\n"):], r"\.")], segs)
    assert exports.vtt([(0.0006, 61.25, "a<b & c")]) == "WEBVTT\n\n00:00:00.001 --> 00:01:01.250\na&lt;b &amp; c\n\n"


def test_json_round_trip_and_row_input():
    segs, duration = long_timeline(3)
    rows = [{"uri": URI, "start": a, "end": b, "label": l, "probability": p} for a, b, l, p in segs]
    frow = {"uri": URI, "duration": duration, "label": "music", "confidence": float("nan"), "status": "ok"}
    back = json.loads(exports.to_json([frow], {URI: rows}))
    assert back["files"] == [{**frow, "confidence": None}]
    assert back["segments"][URI] == [{k: r[k] for k in ("start", "end", "label", "probability")} for r in rows]
    # the writers take parquet rows and tuples alike
    assert exports.audacity(rows) == exports.audacity(segs) and exports.srt(rows[::-1]) == exports.srt(segs)


def test_export_names_never_collide():
    uris = ["s3://b/x/a.wav", "s3://b/y/a.wav", "/b/x/a.wav", "/b/y/a.wav", "s3://c/x/a.wav", "/b/x/a b.wav",
            "/b/x/a_b.wav", "/b/x/a.mp3", "s3://b/x/../a.wav", "/b/x/" + "n" * 300 + ".wav"]
    for root in ("", exports.export_root(uris), exports.export_root(uris[:2]), exports.export_root(uris[2:4])):
        names = [exports.export_name(u, "txt", root) for u in uris]
        assert len(set(names)) == len(uris), names
        for n in names:
            assert not n.startswith("/") and " " not in n and ".." not in n.split("/") and n.endswith(".txt")
            assert all(len(p) < 200 for p in n.split("/"))
    root = exports.export_root(uris[:2])
    assert root == "s3/b" and exports.export_name(uris[0], "srt", root).startswith("x/a.wav.")
    assert exports.export_name("/data/in/a.wav", "txt", exports.export_root(["/data/in/a.wav"])) == \
        "a.wav." + exports.export_name("/data/in/a.wav", "", "").rsplit(".", 1)[1] + ".txt"


def test_parse_formats_and_csv_alias():
    assert exports.parse_formats("srt, json") == ["parquet", "srt", "json"]
    base = ["--input", "x", "--model", "m", "--output", "o"]
    assert job.parse_args(base).format == ["parquet"]
    a = job.parse_args([*base, "--csv", "--format", "vtt"])
    assert a.format == ["parquet", "csv", "vtt"] and a.csv
    assert job.parse_args([*base, "--format", "csv"]).csv
    with pytest.raises(SystemExit):
        job.parse_args([*base, "--format", "audacity,mp4"])


def _tables(entries):
    files, segs = [], []
    for uri, dur, ss in entries:
        files.append({"uri": uri, "duration": dur, "label": ss[0][2] if ss else None, "status": "ok" if ss else "error"})
        segs += [{"uri": uri, "start": a, "end": b, "label": l, "probability": p} for a, b, l, p in ss]
    return pa.Table.from_pylist(files), pa.Table.from_pylist(segs)


def test_write_exports_to_s3(bucket, s3_server):
    s3 = storage.S3Options.from_env()
    segs, duration = long_timeline(4, n=20, hours=0.1)
    uris = [f"s3://{bucket}/in/a.wav", f"s3://{bucket}/in/sub/a.wav", f"s3://{bucket}/in/bad.wav"]
    files, segt = _tables([(uris[0], duration, segs), (uris[1], duration, segs[:3]), (uris[2], 0.0, [])])
    out = f"s3://{bucket}/labels"
    storage.write_bytes(f"{out}/srt/stale.srt", b"from an earlier run", s3)
    written = exports.write_exports(out, files, segt, ["parquet", "srt", "textgrid", "rttm", "json"], s3)
    root = exports.export_root(uris)
    assert sorted(written) == sorted([f"{out}/srt/{exports.export_name(u, 'srt', root)}" for u in uris[:2]] +
                                     [f"{out}/textgrid/{exports.export_name(u, 'TextGrid', root)}" for u in uris[:2]] +
                                     [f"{out}/segments.rttm", f"{out}/segments.json"])
    assert not storage.exists(f"{out}/srt/stale.srt", s3) and storage.exists(f"{out}/srt/sub", s3)
    assert storage.read_bytes(written[0], s3).decode() == exports.srt(segs)
    rttm = storage.read_bytes(f"{out}/segments.rttm", s3).decode().splitlines()
    assert len(rttm) == len(segs) + 3 and len({line.split()[1] for line in rttm}) == 2
    assert set(json.loads(storage.read_bytes(f"{out}/segments.json", s3))["segments"]) == set(uris[:2])


# ------------------------------------------------------------------------------------------------
# the label job

def test_label_job_writes_every_format(ray_local, trained, tmp_path, capsys):  # noqa: F811
    model, _, _ = trained
    audio, out = str(tmp_path / "my audio"), str(tmp_path / "labels")
    uris = sorted([write(audio, "a/music.wav", wav_bytes(make_clip("music", 5.0, 31))),
                   write(audio, "b/music.wav", wav_bytes(make_clip("speech", 6.0, 32))),
                   write(audio, "bad.wav", b"not audio")])
    assert run_job("--input", audio, "--model", model, "--output", out, "--csv",
                   "--format", "audacity,textgrid,rttm,srt,vtt,json") == 0
    files = {r["uri"]: r for r in storage.read_table(os.path.join(out, "files.parquet")).to_pylist()}
    segs = storage.read_table(os.path.join(out, "segments.parquet")).to_pylist()
    ok = [u for u in uris if files[u]["status"] == "ok"]
    assert len(ok) == 2 and os.path.exists(os.path.join(out, "segments.csv"))
    root = exports.export_root(uris)
    for uri in ok:
        want = [(s["start"], s["end"], s["label"], s["probability"]) for s in segs if s["uri"] == uri]
        path = {f: os.path.join(out, f, exports.export_name(uri, ext, root)) for f, ext in exports.PER_FILE.items()}
        lines = open(path["audacity"]).read().splitlines()
        assert_same([(float(a), float(b), l) for a, b, l in (x.split("\t") for x in lines)], want, 1e-6)
        tg = praat_textgrid.openTextgrid(path["textgrid"], includeEmptyIntervals=False, reportingMode="error")
        assert tg.maxTimestamp == pytest.approx(files[uri]["duration"])
        assert_same([(e.start, e.end, e.label) for e in tg.getTier("music-speech").entries], want, 1e-9)
        assert_same([c[:3] for c in _parse_cues(open(path["srt"]).read(), ",")], want)
        assert_same([c[:3] for c in _parse_cues(open(path["vtt"]).read()[8:], r"\.")], want)
    assert sorted(os.listdir(os.path.join(out, "srt"))) == ["a", "b"]       # the inputs' folders, kept
    rttm = [line.split() for line in open(os.path.join(out, "segments.rttm"))]
    assert all(len(f) == 10 for f in rttm) and len(rttm) == sum(s["uri"] in ok for s in segs)
    back = json.load(open(os.path.join(out, "segments.json")))
    assert sorted(back["segments"]) == ok and len(back["files"]) == 3
