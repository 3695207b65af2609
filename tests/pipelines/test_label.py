"""label end to end on real parts: a small checkpoint trained here on generated audio, local Ray, moto S3."""

import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from model import FeatureConfig, save_checkpoint
from pipelines import label as job
from pipelines import storage
from pipelines.demo import make_clip, make_long, wav_bytes

WIN = 4.0   # the test model's window: trained on 4 s crops


def write(root, rel, data):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    return p


def run_job(*args) -> int:
    return job.main([*args, "--actors", "1", "--batch-size", "4"])


# ------------------------------------------------------------------------------------------------

def test_timeline_and_segments():
    # overlapping spans average; short flicker is merged away; probabilities are duration weighted
    edges, mean = job.timeline([0, 1, 2], [2, 3, 3], [[1, 0], [0, 1], [0, 1]])
    assert edges.tolist() == [0, 1, 2, 3]
    assert mean.tolist() == [[1, 0], [0.5, 0.5], [0, 1]]
    edges = np.arange(11.0)
    lab = [0, 0, 0, 0, 1, 0, 0, 1, 1, 1]
    mean = np.array([[0.9, 0.1] if v == 0 else [0.2, 0.8] for v in lab])
    assert [s[:3] for s in job.segments(edges, mean, 0)] == [(0, 4, 0), (4, 5, 1), (5, 7, 0), (7, 10, 1)]
    segs = job.segments(edges, mean, 2.0)
    assert [s[:3] for s in segs] == [(0, 7, 0), (7, 10, 1)]
    assert segs[0][3] == pytest.approx((6 * 0.9 + 0.2) / 7)


def _frow(uri, status="ok", label="music"):
    ok = status == "ok"
    return {"uri": uri, "duration": 4.0, "label": label if ok else None, "confidence": 0.9 if ok else None,
            "fraction_music": 1.0 if ok else None, "fraction_speech": 0.0 if ok else None, "windows": 1,
            "status": status, "error": None if ok else f"{uri}: broken"}


def _put(out, rel, rows, schema):
    import pyarrow as pa

    storage.write_table(os.path.join(out, rel), pa.Table.from_pylist(rows, schema=schema))


def test_read_output_counts_every_file_and_segment_once(tmp_path):
    out = str(tmp_path / "o")
    fs_, ss = job.file_schema(["music", "speech"]), job.SEGMENT_SCHEMA
    # a crash before the first part: only label_config.json -> empty typed tables, not an Arrow error
    os.makedirs(out)
    storage.write_json(os.path.join(out, "label_config.json"), {})
    files, segs = job.read_output(out)
    assert (files.num_rows, segs.num_rows) == (0, 0) and files.schema == fs_ and segs.schema == ss
    os.makedirs(os.path.join(out, "parts", "20260101-000000-aaaaaa", "files"))    # a run dir, no part yet
    assert job.read_output(out)[0].num_rows == 0

    seg = lambda u, a, b: {"uri": u, "start": a, "end": b, "label": "music", "probability": 0.9}  # noqa: E731
    run1, run2 = os.path.join("parts", "20260101-000000-aaaaaa"), os.path.join("parts", "20260102-000000-bbbbbb")
    # run 1: a and b ok, c an error; consolidated into the final tables, then a crash before parts/ was removed
    _put(out, f"{run1}/segments/00000.parquet", [seg("a", 0, 4), seg("b", 0, 2), seg("b", 2, 4)], ss)
    _put(out, f"{run1}/files/00000.parquet", [_frow("a"), _frow("b"), _frow("c", "error")], fs_)
    _put(out, "segments.parquet", [seg("a", 0, 4), seg("b", 0, 2), seg("b", 2, 4)], ss)
    _put(out, "files.parquet", [_frow("a"), _frow("b"), _frow("c", "error")], fs_)
    # run 2 (--resume): c retried and ok in part 0; part 1 crashed between its segments and files writes
    _put(out, f"{run2}/segments/00000.parquet", [seg("c", 0, 1), seg("c", 1, 4)], ss)
    _put(out, f"{run2}/files/00000.parquet", [_frow("c")], fs_)
    _put(out, f"{run2}/segments/00001.parquet", [seg("d", 0, 4), seg("a", 0, 4)], ss)
    open(os.path.join(out, run2, "files", "00001.parquet.tmp-123"), "wb").write(b"half a parquet file")
    files, segs = job.read_output(out)
    assert [(r["uri"], r["status"]) for r in files.to_pylist()] == [("a", "ok"), ("b", "ok"), ("c", "ok")]
    assert [(r["uri"], r["start"]) for r in segs.to_pylist()] == [("a", 0), ("b", 0), ("b", 2), ("c", 0), ("c", 1)]
    assert files.schema == fs_ and segs.schema == ss


def test_a_file_whose_windows_never_come_back_is_an_error_row(tmp_path):
    import pyarrow as pa

    def row(uri, seq, final, n_rows):
        return {"uri": uri, "seq": seq, "final": final, "n_rows": n_rows, "duration": 8.0, "status": "ok",
                "error": None, "unit_start": [4.0 * seq], "unit_end": [4.0 * seq + 4], "probs": [0.8, 0.2]}

    # a: both windows; b: its first window only (the final one is lost); c: nothing at all
    batches = [pa.Table.from_pylist([row("a", 0, False, 0), row("b", 0, False, 0)], schema=job.SCORE_SCHEMA),
               pa.Table.from_pylist([row("a", 1, True, 2)], schema=job.SCORE_SCHEMA)]
    out = str(tmp_path / "o")
    classes = ["music", "speech", "silence"]                  # the network's two, and the level's silence
    writer = job.PartWriter(out, None, classes)
    n_done, n_err, seconds = job.collect(iter(batches), ["a", "b", "c"], writer, classes, 0.0)
    writer.flush()
    assert (n_done, n_err, seconds) == (3, 2, 8.0)
    files = {r["uri"]: r for r in job.read_output(out, classes=classes)[0].to_pylist()}
    assert files["a"]["status"] == "ok" and files["a"]["label"] == "music" and files["a"]["windows"] == 2
    assert files["b"]["status"] == "error" and "only 1 of its windows came back" in files["b"]["error"]
    assert files["c"]["status"] == "error" and files["c"]["error"] == "c: its windows never came back from the workers"


def test_a_bug_in_our_code_raises_instead_of_an_error_row(tmp_path):
    good = write(str(tmp_path), "a.wav", wav_bytes(make_clip("music", 2.0, 1)))
    bad = write(str(tmp_path), "bad.wav", b"RIFF not really")
    # a valid FeatureConfig whose window is 0 samples makes featurize raise: our bug, not a bad file
    with pytest.raises(ValueError, match="empty"):
        list(job.window_rows({"uri": np.array([good])}, FeatureConfig(window_seconds=1e-9).to_dict(), 1e-9, None))
    rows = [r for t in job.window_rows({"uri": np.array([bad, good])}, FeatureConfig(window_seconds=1.0).to_dict(),
                                       1.0, None) for r in t.to_pylist()]
    assert [(r["uri"], r["status"]) for r in rows if r["final"]] == [(bad, "error"), (good, "ok")]
    assert "bad.wav" in rows[0]["error"]


def test_labels_clips_long_file_and_errors(ray_local, trained, tmp_path, capsys):
    model, cfg, _ = trained
    audio, out = str(tmp_path / "audio"), str(tmp_path / "labels")
    truth = {}
    for k in range(2):
        for kind, sec in (("music", 5.0), ("speech", 3.0)):
            truth[write(audio, f"{kind}{k}.wav", wav_bytes(make_clip(kind, sec, 700 + k)))] = kind
    stereo = np.stack([make_clip("speech", 6.0, 7, sr=44100), make_clip("speech", 6.0, 8, sr=44100)], axis=1)
    truth[write(audio, "sub/stereo44k.flac", wav_bytes(stereo, 44100, fmt="FLAC"))] = "speech"
    parts = [("speech", 11.0), ("music", 14.0), ("speech", 9.5), ("music", 12.5), ("speech", 13.0)]
    x, gt = make_long(parts, seed=3)
    long = write(audio, "long/long.wav", wav_bytes(x))
    good = wav_bytes(make_clip("music", 3.0, 9))
    bad = {write(audio, "bad/corrupt.wav", good[: len(good) // 3]), write(audio, "bad/empty.wav", b""),
           write(audio, "bad/notaudio.mp3", b"<html>not audio</html>" * 40)}

    png = str(tmp_path / "long.png")
    assert run_job("--input", audio, "--model", model, "--output", out, "--csv", "--plot", png,
                   "--plot-uri", long) == 0
    printed = capsys.readouterr().out
    assert "label: done: 9 files" in printed and "3 errors" in printed and "realtime" in printed
    files = {r["uri"]: r for r in pq.read_table(os.path.join(out, "files.parquet")).to_pylist()}
    assert set(files) == set(truth) | bad | {long}
    for uri, kind in truth.items():
        assert files[uri]["status"] == "ok" and files[uri]["label"] == kind, files[uri]
        assert files[uri][f"fraction_{kind}"] > 0.9 and files[uri]["confidence"] > 0.7
    assert files[os.path.join(audio, "sub/stereo44k.flac")]["duration"] == pytest.approx(6.0)
    for uri in bad:
        assert files[uri]["status"] == "error" and uri in files[uri]["error"] and files[uri]["label"] is None

    # the long file: boundaries within one hop (a window, here 4 s) of the truth -- in fact within ~1 s
    segs = [r for r in pq.read_table(os.path.join(out, "segments.parquet")).to_pylist() if r["uri"] == long]
    assert [s["label"] for s in segs] == [k for k, _ in parts]
    assert segs[0]["start"] == 0 and segs[-1]["end"] == pytest.approx(len(x) / 22050, abs=1e-3)
    errs = [abs(s["start"] - g[0]) for s, g in zip(segs[1:], gt[1:])]
    assert max(errs) <= WIN, (errs, segs)
    assert max(errs) <= 1.5, (errs, segs)
    assert all(a["end"] == b["start"] for a, b in zip(segs, segs[1:]))
    assert files[long]["fraction_speech"] == pytest.approx(33.5 / 60, abs=0.05)
    assert os.path.getsize(png) > 10_000 and open(png, "rb").read(4) == b"\x89PNG"
    assert open(os.path.join(out, "segments.csv")).readline().strip() == '"uri","start","end","label","probability"'
    assert os.path.exists(os.path.join(out, "_SUCCESS.json")) and not os.path.exists(os.path.join(out, "parts"))

    # a rerun without --resume/--overwrite refuses and changes nothing
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "labels").rglob("*"))
    assert run_job("--input", audio, "--model", model, "--output", out) == 2
    assert "--resume" in capsys.readouterr().err
    assert before == sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "labels").rglob("*"))


def test_resume_after_partial_run(ray_local, trained, tmp_path, capsys):
    model, _, _ = trained
    audio, out = str(tmp_path / "audio"), str(tmp_path / "labels")
    uris = [write(audio, f"{kind}{k}.wav", wav_bytes(make_clip(kind, 4.0, 800 + k)))
            for k, kind in enumerate(["music", "speech", "music", "speech"])]
    # a partial run: labels two files, then "dies" before finishing (its parts stay, no _SUCCESS.json)
    listing = tmp_path / "first.csv"
    listing.write_text("path\n" + "\n".join(uris[:2]) + "\n")
    assert run_job("--list", str(listing), "--model", model, "--output", out) == 0
    first_segs = pq.read_table(os.path.join(out, "segments.parquet")).num_rows
    # ... after consolidating, before removing its parts: both the final tables and the parts remain
    os.remove(os.path.join(out, "_SUCCESS.json"))
    part = os.path.join(out, "parts", "crashed")
    for name in ("files", "segments"):
        os.makedirs(os.path.join(part, name))
        shutil.copy(os.path.join(out, f"{name}.parquet"), os.path.join(part, name, "00000.parquet"))
    capsys.readouterr()
    assert run_job("--input", audio, "--model", model, "--output", out, "--resume") == 0
    printed = capsys.readouterr().out
    assert "2 files already labeled, 2 to go" in printed and "label: done: 2 files" in printed
    got = pq.read_table(os.path.join(out, "files.parquet")).to_pylist()
    assert sorted(r["uri"] for r in got) == sorted(uris)
    segs = pq.read_table(os.path.join(out, "segments.parquet")).to_pylist()
    assert len({(r["uri"], r["start"]) for r in segs}) == len(segs)                 # nothing doubled
    assert sum(r["uri"] in uris[:2] for r in segs) == first_segs
    assert [r["label"] for r in sorted(got, key=lambda r: r["uri"])] == ["music", "music", "speech", "speech"]
    # --resume with nothing new labels nothing; another model is refused
    assert run_job("--input", audio, "--model", model, "--output", out, "--resume") == 0
    assert "4 files already labeled, 0 to go" in capsys.readouterr().out
    other = tmp_path / "other.pt"
    with open(other, "wb") as f:
        save_checkpoint(f, trained[2], trained[1], note="another model")
    assert run_job("--input", audio, "--model", str(other), "--output", out, "--resume") == 2
    assert "another model or settings" in capsys.readouterr().err
    # a crash before the first part was written leaves only label_config.json: --resume labels everything
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(os.path.join(out, "label_config.json"), crashed / "label_config.json")
    assert run_job("--list", str(listing), "--model", model, "--output", str(crashed), "--resume") == 0
    assert "0 files already labeled, 2 to go" in capsys.readouterr().out
    assert pq.read_table(crashed / "files.parquet").column("status").to_pylist() == ["ok", "ok"]


def test_s3_in_and_out(ray_local, trained, bucket, s3_server, capsys):
    model, _, _ = trained
    block_size = ray_local.data.DataContext.get_current().target_max_block_size
    s3 = storage.S3Options.from_env()
    for k, kind in enumerate(["music", "speech", "music"]):
        storage.write_bytes(f"s3://{bucket}/in/{kind}{k}.wav", wav_bytes(make_clip(kind, 4.0, 600 + k)), s3)
    storage.write_bytes(f"s3://{bucket}/in/bad.wav", b"junk", s3)
    storage.write_bytes(f"s3://{bucket}/model.pt", open(model, "rb").read(), s3)
    out = f"s3://{bucket}/labels"
    assert run_job("--input", f"s3://{bucket}/in", "--model", f"s3://{bucket}/model.pt", "--output", out,
                   "--endpoint-url", s3_server) == 0
    files = {r["uri"]: r for r in storage.read_table(f"{out}/files.parquet", s3).to_pylist()}
    assert {u: r["label"] for u, r in files.items()} == {
        f"s3://{bucket}/in/music0.wav": "music", f"s3://{bucket}/in/speech1.wav": "speech",
        f"s3://{bucket}/in/music2.wav": "music", f"s3://{bucket}/in/bad.wav": None}
    assert files[f"s3://{bucket}/in/bad.wav"]["status"] == "error"
    assert storage.read_table(f"{out}/segments.parquet", s3).num_rows >= 3
    assert storage.exists(f"{out}/_SUCCESS.json", s3)
    # the job set its block size on its own dataset's context, not on this process's
    assert ray_local.data.DataContext.get_current().target_max_block_size == block_size


def test_bad_inputs_exit_2_naming_them(ray_local, trained, tmp_path, capsys):
    model, _, _ = trained
    assert run_job("--input", str(tmp_path / "missing"), "--model", model, "--output", str(tmp_path / "o")) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_job("--input", str(tmp_path / "empty"), "--model", model, "--output", str(tmp_path / "o")) == 2
    assert "no audio files" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert run_job("--input", str(tmp_path / "empty"), "--model", str(tmp_path / "junk.pt"),
                   "--output", str(tmp_path / "o")) == 2
    assert "junk.pt" in capsys.readouterr().err
    # reservations no node can give: refused at once, naming the flag (Ray would wait forever), nothing written
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.wav").write_bytes(wav_bytes(make_clip("speech", 2.0, 0)))
    for flags, name in ((["--decode-cpus", "64"], "--decode-cpus"), (["--cpus-per-actor", "64"], "--cpus-per-actor")):
        assert run_job("--input", str(tmp_path / "in"), "--model", model, "--output", str(tmp_path / "o2"), *flags) == 2
        assert name in capsys.readouterr().err and not (tmp_path / "o2" / "files.parquet").exists()


def test_an_ensemble_of_one_network_twice_labels_as_the_network_and_a_mismatched_one_is_refused(
        ray_local, trained, trained3, tmp_path, capsys):
    """--ensemble runs every member over every window and averages: two copies of one network give its own
    labels and probabilities; a member with other classes is refused before anything is written."""
    model, _, _ = trained
    twin = shutil.copy(model, str(tmp_path / "twin.pt"))
    audio = str(tmp_path / "audio")
    write(audio, "a.wav", wav_bytes(np.concatenate([make_clip("speech", 5.0, 1), make_clip("music", 6.0, 2)])))
    tables = []
    for name, extra in (("one", []), ("two", ["--ensemble", twin])):
        assert run_job("--input", audio, "--model", model, "--output", str(tmp_path / name), *extra) == 0
        tables.append(pq.read_table(os.path.join(str(tmp_path / name), "segments.parquet")).to_pylist())
    assert [(r["start"], r["end"], r["label"]) for r in tables[0]] == [(r["start"], r["end"], r["label"]) for r in tables[1]]
    assert [r["probability"] for r in tables[0]] == pytest.approx([r["probability"] for r in tables[1]], abs=1e-5)
    assert storage.read_json(str(tmp_path / "two" / "label_config.json"))["ensemble"] == [twin]
    capsys.readouterr()
    assert run_job("--input", audio, "--model", model, "--ensemble", trained3[0], "--output", str(tmp_path / "bad")) == 2
    assert trained3[0] in capsys.readouterr().err and not (tmp_path / "bad" / "files.parquet").exists()


def test_silence_from_the_level_and_a_three_class_model(ray_local, trained, trained3, tmp_path):
    """Digital silence and a -80 dBFS hiss >= 1 s inside a file come out as `silence` with either model; a
    0.4 s pause does not; a silent file is `silence`; the 3-class checkpoint labels noise and loads as it
    was saved (its classes in its config)."""
    from model import load_checkpoint

    audio = str(tmp_path / "audio")
    zeros = lambda s: np.zeros(int(s * 22050), np.float32)
    hiss = (np.random.default_rng(0).standard_normal(int(2.0 * 22050)) * 1e-4).astype(np.float32)
    parts = [make_clip("speech", 5.0, 1), zeros(1.5), make_clip("music", 6.0, 2), hiss,
             make_clip("speech", 4.0, 3), zeros(0.4), make_clip("music", 4.0, 4)]
    gaps = write(audio, "gaps.wav", wav_bytes(np.concatenate(parts)))
    silent = write(audio, "silent.wav", wav_bytes(zeros(10.0)))
    noise = write(audio, "noise.wav", wav_bytes(make_clip("noise", 8.0, 5)))
    net, _, _ = load_checkpoint(open(trained3[0], "rb"))
    assert net.cfg.classes == ("music", "speech", "noise") and net.cfg.n_classes == 3
    for model, name in ((trained[0], "two"), (trained3[0], "three")):
        out = str(tmp_path / name)
        assert run_job("--input", audio, "--model", model, "--output", out) == 0
        files = {r["uri"]: r for r in pq.read_table(os.path.join(out, "files.parquet")).to_pylist()}
        assert files[silent]["label"] == "silence" and files[silent]["fraction_silence"] == pytest.approx(1.0)
        segs = [r for r in pq.read_table(os.path.join(out, "segments.parquet")).to_pylist() if r["uri"] == gaps]
        quiet = [(r["start"], r["end"]) for r in segs if r["label"] == "silence"]
        assert len(quiet) == 2, segs
        for (s, e), (ws, we) in zip(quiet, [(5.0, 6.5), (12.5, 14.5)]):   # a clip may end in its own pause
            assert ws - 0.5 <= s <= ws + 0.06 and we - 0.06 <= e <= we + 0.5, quiet
        assert [r["label"] for r in segs if r["label"] != "silence"][:2] == ["speech", "music"]
        if name == "three":
            assert files[noise]["label"] == "noise" and "fraction_noise" in files[noise]
        else:
            assert "fraction_noise" not in files[noise] and files[noise]["label"] in ("music", "speech")
