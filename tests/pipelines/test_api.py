"""The Python API (pipelines/api.py): typed configs with the CLI's defaults, and each job called as a function
on generated audio, its result object checked against what it wrote."""

import ast
import dataclasses
import json
import os
import re

import pyarrow.parquet as pq
import pytest

from model import load_checkpoint
from pipelines import featurize as featurize_job
from pipelines import label as label_job
from pipelines import train as train_job
from pipelines import api
from pipelines.api import (FeaturizeConfig, JobError, LabelConfig, TrainConfig, featurize, label, train)
from pipelines.demo import make_clip, wav_bytes, write_demo

LABEL_REQUIRED = ["--input", "in", "--model", "m.pt", "--output", "out"]
README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "README.md")


def test_configs_have_the_cli_options_and_defaults():
    """Every option of a job is a field of its config and vice versa (label's --csv is `format` with csv in
    it; TrainConfig's fields after the CLI's are derived from the data), with the same defaults."""
    cli = vars(featurize_job.parse_args([]))
    assert list(cli) == [f.name for f in dataclasses.fields(FeaturizeConfig)]
    assert featurize_job.config_of(featurize_job.parse_args([])) == FeaturizeConfig()

    cli = vars(label_job.parse_args(LABEL_REQUIRED))
    assert set(cli) - {"csv"} == {f.name for f in dataclasses.fields(LabelConfig)}
    assert label_job.config_of(label_job.parse_args(LABEL_REQUIRED)) == LabelConfig(input="in", model="m.pt",
                                                                                     output="out")
    cli = vars(train_job.parse_args([]))
    assert list(cli) == [f.name for f in dataclasses.fields(TrainConfig)][:len(cli)]
    assert train_job.config_of(train_job.parse_args([])) == TrainConfig()
    # options that are lists or comma-separated on the command line: the same config either way
    a = featurize_job.parse_args(["--input", "a", "--input", "b", "--extensions", "wav,MP4", "--augment-kinds", "eq"])
    assert featurize_job.config_of(a) == FeaturizeConfig(input=("a", "b"), extensions="wav,MP4", augment_kinds="eq")
    assert FeaturizeConfig(input="a").input == ("a",) and FeaturizeConfig(extensions="mp4").extensions == (".mp4",)
    a = label_job.parse_args([*LABEL_REQUIRED, "--csv", "--format", "vtt"])
    assert label_job.config_of(a).format == ("parquet", "csv", "vtt") == LabelConfig(
        input="in", model="m.pt", output="out", format="vtt,csv").format
    assert train_job.config_of(train_job.parse_args(["--classes", "speech,music"])).classes == ("speech", "music")


def test_configs_are_frozen_and_name_a_bad_setting():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FeaturizeConfig().output = "x"
    for make, field in ((lambda: FeaturizeConfig(files_per_task=0), "files_per_task"),
                        (lambda: FeaturizeConfig(overwrite=True, resume=True), "resume"),
                        (lambda: FeaturizeConfig(augment_kinds=("band", "vinyl")), "vinyl"),
                        (lambda: FeaturizeConfig(extensions=("wav",)), "extensions"),
                        (lambda: LabelConfig(model="m", output="o"), "input"),
                        (lambda: LabelConfig(input="i", model="m", output="o", format="mp4"), "mp4"),
                        (lambda: LabelConfig(input="i", model="m", output="o", hop_seconds=0), "hop_seconds"),
                        (lambda: TrainConfig(folds=1), "folds"),
                        (lambda: TrainConfig(class_weighting="inverse"), "class_weighting"),
                        (lambda: TrainConfig(name="a", resume="a"), "resume")):
        with pytest.raises(ValueError, match=field):
            make()
    with pytest.raises(TypeError):
        LabelConfig("in", "m.pt", "out")              # keyword-only: no silently swapped paths


def test_a_bad_input_raises_job_error_naming_it(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(JobError, match="missing") as e:
        featurize(FeaturizeConfig(input=missing, output=str(tmp_path / "f")))
    assert e.value.exit_code == 2
    with pytest.raises(JobError, match="nope") as e:
        train(TrainConfig(features=str(tmp_path / "nope"), output=str(tmp_path / "runs")))
    assert e.value.exit_code == 2


def test_featurize_then_train(ray_local, tmp_path, monkeypatch):
    """Relative paths, as in a notebook that changed its directory after Ray started: the paths the Ray
    workers write (featurize's error rows, train's model.pt and report/) must land where the results say."""
    monkeypatch.chdir(tmp_path)
    write_demo("audio", per_class=6, seconds=4.0, seed=3)           # 4 train + 2 test files per class, 4 s each
    (tmp_path / "audio" / "train" / "music" / "broken.wav").write_bytes(b"RIFF not audio")
    feats = featurize(FeaturizeConfig(input="audio", output="features", window_seconds=4.0, files_per_task=4))
    assert (feats.files, feats.windows, feats.errors) == (12, 12, 1) and feats.inputs == ("audio",)
    assert feats.audio_hours == pytest.approx(12 * 4.0 / 3600)
    assert pq.read_table(feats.shards).num_rows == feats.windows
    assert pq.read_table(feats.errors_table).column("uri").to_pylist() == [str(tmp_path / "audio/train/music/broken.wav")]
    done = json.load(open(feats.marker))
    assert done["this_run"]["files"] == feats.files and done["this_run"]["windows"] == feats.windows
    assert done["this_run"]["wall_seconds"] == feats.wall_seconds and done["errors"] == feats.errors
    assert feats.summary_line().startswith("featurize: done: 12 files, 12 windows, 0.013 h of audio, 1 errors,")
    with pytest.raises(JobError, match="--resume"):                 # a finished output is never replaced unasked
        featurize(FeaturizeConfig(input="audio", output=feats.output, window_seconds=4.0))

    run = train(TrainConfig(features=feats.output, output="runs", name="api", epochs=1, min_epochs=1,
                            crop_seconds=2.0, crops_per_window=1.0, batch_size=4))
    assert run.run_dir == os.path.join("runs", "api") and run.model == os.path.join(run.run_dir, "model.pt")
    metrics = json.load(open(os.path.join(run.report, "metrics.json")))
    assert run.test_accuracy == metrics["test"]["accuracy"] and run.test_windows == metrics["test"]["n"] == 4
    assert run.roc_auc == metrics["test"]["roc_auc"] and run.folds == 0 and run.fold_models == ()
    net, fcfg, _ = load_checkpoint(open(run.model, "rb"))
    assert net.cfg.classes == ("music", "speech") and fcfg.window_seconds == 4.0
    assert json.load(open(os.path.join(run.run_dir, "train_config.json")))["epochs"] == 1
    assert run.summary_line().startswith(f"train: done: test accuracy {run.test_accuracy:.4f} (4 windows")


def test_label(ray_local, trained, tmp_path):
    model = trained[0]
    audio = tmp_path / "audio"
    audio.mkdir()
    for k, kind in enumerate(["music", "speech"]):
        (audio / f"{kind}.wav").write_bytes(wav_bytes(make_clip(kind, 8.0, 40 + k)))
    (audio / "bad.wav").write_bytes(b"junk")
    png = str(tmp_path / "t.png")
    cfg = LabelConfig(input=str(audio), model=model, output=str(tmp_path / "labels"), actors=1, format="csv,json",
                      plot=png, plot_uri=str(audio / "speech.wav"))
    r = label(cfg)
    files = {row["uri"]: row for row in pq.read_table(r.files_table).to_pylist()}
    assert (r.files, r.errors, r.total_files, r.total_labeled) == (3, 1, 3, 2) == (len(files), 1, 3, 2)
    assert files[str(audio / "speech.wav")]["label"] == "speech" and files[str(audio / "bad.wav")]["status"] == "error"
    assert r.total_segments == pq.read_table(r.segments_table).num_rows >= 2
    assert r.audio_seconds == pytest.approx(16.0) and r.realtime_factor == pytest.approx(16.0 / r.wall_seconds)
    done = json.load(open(r.marker))["this_run"]
    assert (done["files"], done["errors"], done["wall_seconds"]) == (r.files, r.errors, r.wall_seconds)
    assert r.plot == png and open(png, "rb").read(4) == b"\x89PNG"
    assert os.path.exists(os.path.join(r.output, "segments.csv")) and os.path.exists(os.path.join(r.output, "segments.json"))
    assert r.summary_line().startswith("label: done: 3 files, 0.004 h of audio, 1 errors,")

    with pytest.raises(JobError, match="--resume") as e:           # a finished output is never replaced unasked
        label(dataclasses.replace(cfg, plot=None))
    assert e.value.exit_code == 2
    again = label(dataclasses.replace(cfg, resume=True, plot=None))   # files with errors are retried
    assert (again.files, again.errors, again.total_files, again.total_labeled, again.plot) == (1, 1, 3, 2, None)


def test_readme_section_names_what_the_code_has():
    """README's Python API example calls the API with fields the configs have and reads attributes the
    results have, and its table lists each result's fields (the example itself runs in the tests above)."""
    text = open(README).read().split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    tree = ast.parse(code)
    results = {"featurize": api.FeaturizeResult, "train": api.TrainResult, "label": api.LabelResult}
    names = lambda cls: {f.name for f in dataclasses.fields(cls)} | {k for k, v in vars(cls).items()
                                                                      if isinstance(v, property)}
    made = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "").endswith("Config"):
            cls = getattr(api, node.func.id)
            assert {k.arg for k in node.keywords} <= names(cls), node.func.id
            cls(**{k.arg: ast.literal_eval(k.value) if isinstance(k.value, ast.Constant) else "x"
                   for k in node.keywords})                                   # valid as written
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                getattr(node.value.func, "id", "") in results:
            made[node.targets[0].id] = results[node.value.func.id]
    used = [(n.value.id, n.attr) for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id in made]
    assert used and all(attr in names(made[var]) for var, attr in used), used
    for fn, cls in results.items():
        row = re.search(rf"^\| `{fn}\((\w+)\)` \| (.*) \|$", text, re.M)
        assert row and row.group(1) == cls.__name__.replace("Result", "Config")
        assert set(re.findall(r"`(\w+)`", row.group(2))) - {"cv"} <= names(cls), fn
