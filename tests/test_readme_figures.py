"""The README's figures are the numbers in benchmarks/results/*.json: one place for each figure. A table row
the README quotes from a results file must carry that file's numbers (rerun the benchmark, then paste)."""

import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_line(start: str) -> str:
    lines = [x for x in open(os.path.join(REPO, "README.md")).read().splitlines() if x.startswith(start)]
    assert len(lines) == 1, f"README should have one line starting {start!r}, has {len(lines)}"
    return lines[0]


def results(name: str) -> dict:
    with open(os.path.join(REPO, "benchmarks", "results", name)) as f:
        return json.load(f)


def _span(values, fmt: str = "{:.3f}", sep: str = "-") -> str:
    return fmt.format(min(values)) + sep + fmt.format(max(values))


def f1(runs: dict, name: str, k: str) -> float:
    """Class k's segment F1 under condition `name`, rounded as the README prints it."""
    return round(runs[name]["ours"][k]["f1"], 3)


def pair(d: dict) -> str:
    """Music / speech segment F1 as the README prints them."""
    return f"{d['music']['f1']:.3f} / {d['speech']['f1']:.3f}"


def readme_from(start: str, n: int) -> str:
    """n characters of the README (whitespace collapsed) from `start`."""
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    return text[text.index(start):][:n]


def assert_spans(b: str, c: dict) -> None:
    """The clip-accuracy and per-class F1 spans of the conditions `c` are quoted in `b`."""
    assert "clips " + _span([v["clip_accuracy"] * 100 for v in c.values()], "{:.1f}") + "%" in b
    for k in ("music", "speech"):
        assert f"{k} F1 " + _span([v["ours"][k]["f1"] for v in c.values()]) in b, k


def test_robustness_table_is_its_results_file():
    r = results("robustness-fast-8.json")
    assert r["label_args"] == ["--class-prior", "noise=0.6"] and not r["dirty"]
    assert r["train_args"][r["train_args"].index("--min-epochs") + 1] == "8"
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    measured = text[text.index("**Measured.** The recipe"):][:1500]
    assert f"featurize {r['featurize_wall_s']:.0f} s + train {r['train_wall_s']:,.0f} s" in measured
    assert f"= **{(r['featurize_wall_s'] + r['train_wall_s']) / 60:.0f} min, inside the 1-hour target**" in measured
    assert f"best epoch {r['train_test_metrics']['best_epoch']})" in measured
    c = r["conditions"].values()
    speed = text[text.index("* **Speed:** the label job ran at"):][:120]
    assert _span([x["realtime"] for x in c], "{:.1f}", "-") + "× realtime" in speed, speed
    targets = text[text.index("* **Targets (the table's run"):][:360]
    for key in ("music", "speech"):
        assert _span([x["ours"][key]["f1"] for x in c]) in targets, (key, targets)
    assert r["commit"] and r["command"].startswith("benchmarks/robustness.py") and r["machine"]["cpus"]
    for name, c in r["conditions"].items():
        line = readme_line(f"| {name} |")
        assert f"{c['clip_accuracy'] * 100:.1f}%" in line, line
        for k in ("music", "speech"):
            assert f"{c['ours'][k]['f1']:.3f}" in line, (k, line)
            if c.get("ina"):
                assert f"{c['ina'][k]['f1']:.3f}" in line, (k, line)


def test_leave_source_out_figures_are_the_results_file():
    lso = results("robustness.json")["leave_source_out"]
    if not lso:
        pytest.skip("robustness.json holds no leave-source-out run")
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    line = text[text.index("**Leave-source-out on the corpus"):][:900]
    assert f"{lso['corpus_music_speech_accuracy'] * 100:.1f}% of the {lso['corpus_music_speech_clips']:,}" in line, line
    assert f"noise recall {lso['noise_recall'] * 100:.1f}% of {lso['noise_clips']}" in line, line
    assert f"{lso['gtzan_unseen_accuracy'] * 100:.1f}% of its {lso['gtzan_clips']}" in line, line
    half = lso["noise_weight_sweep"]["0.5"]
    prior = text[text.index("**`--class-prior noise=W`"):][:700]
    for v in (half["corpus_music_speech_accuracy"], half["gtzan_unseen_accuracy"], half["noise_recall"]):
        assert f"{v * 100:.1f}%" in prior, prior


def test_leave_source_out_of_the_4khz_model_is_its_results_file():
    lso = results("robustness-bltrain.json")["leave_source_out"]
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    line = text[text.index("**Leave-source-out of the model trained at 4 kHz"):][:800]
    for v in (lso["corpus_music_speech_accuracy"], lso["noise_recall"], lso["gtzan_unseen_accuracy"],
              *lso["noise_weight_sweep"]["0.6"].values(), *lso["noise_weight_sweep"]["0.5"].values()):
        if isinstance(v, float):
            assert f"{v * 100:.1f}%" in line, (v, line)
    assert f"{lso['wall_s']:,.0f} s" in line and "/".join(f" {a * 100:.1f} " for a in lso["fold_accuracies"]).strip() in line


def test_robustness_labeling_variants_are_their_results_files():
    files = ("robustness-default.json", "robustness.json", "robustness-w3.json", "robustness-bltrain.json",
             "robustness-bltrain-prior.json")  # columns, each labeled before the smoothing (what --switch-cost 0 does)
    runs = [results(f) for f in files]
    assert runs[-1]["label_args"] == ["--class-prior", "noise=0.6"]
    for name in runs[0]["conditions"]:
        line = readme_line(f"| {name} (variants) |")
        cells = [c.strip() for c in line.strip("|").split("|")][1:1 + len(files)]
        assert len(cells) == len(files), line
        for cell, r in zip(cells, runs):
            x = r["conditions"][name]
            assert cell == f"{x['clip_accuracy'] * 100:.1f}% · {x['ours']['music']['f1']:.3f} / {x['ours']['speech']['f1']:.3f}", \
                (name, cell)


def test_augment_costs_are_their_results_file():
    r = results("augment.json")
    for k, ms in r["ms_per_30s_clip_one_thread"].items():
        line = readme_line(f"| step `{k}` |")
        assert f"| {ms:.1f} |" in line, k
        if k in r["copy_cost_vs_original"]:
            assert f"| {r['copy_cost_vs_original'][k]:.2f} |" in line, k


def test_label_table_is_its_results_file():
    r = results("label.json")
    text = open(os.path.join(REPO, "README.md")).read()
    for run in r["runs"]:
        assert f"| {run['realtime']:.1f}× | {run['realtime_with_startup']:.1f}× | " \
               f"{run['peak_tree_mib']:.0f} / {run['peak_largest_mib']:.0f} MiB" in text, run["run"]
    for ev in r["segments_hour"].values():
        for k in ("music", "speech"):
            assert " / ".join(f"{ev[k][m]:.3f}" for m in ("precision", "recall", "f1")) in text, k
    for name, q in r["memory_vs_30s"].items():
        run = next(x for x in r["runs"] if x["run"] == name)
        if name.endswith("timeline") and name != r["runs"][0]["run"]:   # the pooled runs quote their ratios
            assert f"{run['peak_largest_mib']:.0f} MiB ({q['tree']:.2f}× / {q['largest']:.2f}× the 30 s run)" in text, name


def test_ingest_table_is_its_results_file():
    r = results("ingest.json")
    for path, v in r["summary"].items():
        line = readme_line(f"| {path} | ")
        assert f"| {v['crops_per_s']:.2f} | {v['train_seconds_per_epoch']:.1f} | {v['data_load_seconds']:.1f} | " \
               f"{v['peak_memory_mb_per_worker']:.0f} | {v['test_accuracy']:.3f} |" in line, line



def test_training_tables_are_their_results_files():
    m, cv = results("accuracy-metrics.json"), results("cv-metrics.json")
    t = m["test"]
    line = readme_line("| test accuracy |")
    assert f"**{t['accuracy'] * 100:.2f}%**" in line and f"ROC AUC {t['roc_auc']:.3f}" in line, line
    line = readme_line("| per class precision / recall / F1 |")
    for k in m["classes"]:
        assert f"{k} " + " / ".join(f"{t['per_class'][k][x]:.3f}" for x in ("precision", "recall", "f1")) in line, k
    assert f"best epoch {m['best_epoch']} of {m['epochs_run']}" in readme_line("| wall time of the train/test run |")
    assert f"| {m['train_samples_per_s']:.1f} crops/s |" in readme_line("| training throughput (job, 3 s crops) |")
    assert f"{m['peak_memory_mb_per_worker'] / 1000:.1f} GB per Ray Train worker" in readme_line("| peak memory |")
    line = readme_line("| 5-fold stratified CV over all 128 clips |")
    assert f"**{cv['accuracy_mean'] * 100:.2f}% ± {cv['accuracy_std'] * 100:.2f}%**" in line, line
    assert "(" + ", ".join(f"{a:.3f}" for a in cv["fold_accuracies"]) + ":" in line, line
    assert f"ROC AUC {min(cv['fold_roc_auc']):.3f}-{max(cv['fold_roc_auc']):.3f}" in line, line
    assert f"| {cv['wall_seconds']:,.0f} s (" in readme_line("| wall time of the 5-fold CV |")
    assert f"| {cv['train_samples_per_s']:.1f} crops/s" in readme_line("| training throughput in the CV (job, 3 s crops) |")
    assert f"{cv['peak_memory_mb_per_worker'] / 1000:.1f} GB per Ray Train worker" in readme_line("| peak memory in the CV |")


def quiet_run(name: str, command: str) -> dict:
    """A results file the README's speed table comes from; skipped, saying which command to rerun on a quiet
    machine, while the file has not been written yet (the figures in the README came before it wrote one)."""
    if not os.path.exists(os.path.join(REPO, "benchmarks", "results", name)):
        pytest.skip(f"benchmarks/results/{name} not written yet: run `{command}` on a quiet machine, then paste")
    r = results(name)
    assert r["commit"] and r["command"].startswith(command.split()[1]) and r["machine"]["cpus"], name
    return r


def test_featurize_table_is_its_results_file():
    r = quiet_run("featurize.json", ".venv/bin/python benchmarks/featurize.py")
    j, n, q = r["job"], r["naive"], r["ratios"]
    line = readme_line("| featurize job (local Ray,")
    assert f"| {j['clips_per_s']:.1f} vs {n['clips_per_s']:.2f} clips/s = **{q['job_over_naive']:.1f}×**; " \
           f"{j['audio_s_per_s']:,.0f} audio-s/s ({j['wall_s']:.1f} s from Ray up to the last shard)" in line, line
    assert f"{r['windows']} clips" in line, line
    line = readme_line("| bytes per clip on disk: zstd Parquet vs the seed's `.npy` |")
    assert f"| {j['bytes_per_clip']:,.0f} vs {n['bytes_per_clip']:,.0f} = **{q['dense_over_ours_bytes']:.0f}× fewer**" in line
    line = readme_line("| pure transform / job clips/s (Ray overhead) |")
    assert f"| {r['pure']['clips_per_s']:.1f} / {j['clips_per_s']:.1f} = **{q['pure_over_job']:.2f}**" in line, line


def test_featurize_core_rows_are_their_results_file():
    r = quiet_run("featurize_core.json", ".venv/bin/python benchmarks/featurize_core.py")
    line = readme_line("| pure transform (decode + featurize, 1 process, 2 threads) vs naive")
    assert f"| {r['ours_clips_per_s']:.1f} vs {r['naive_clips_per_s']:.1f} clips/s = {r['speedup']:.1f}× |" in line
    line = readme_line("| bytes per 30 s clip: uint8 index vs dense float32 |")
    assert f"| {r['index_bytes']:,} vs {r['dense_bytes']:,} = {r['dense_bytes'] / r['index_bytes']:.0f}× smaller" in line
    assert f"≥ {r['agreement_min']:.6f} of elements" in readme_line("| expand(index) equal to the naive")


def test_scaling_table_is_its_results_file():
    r = quiet_run("scaling.json", ".venv/bin/python benchmarks/scaling.py")
    for stage, s in r["stages"].items():
        line = readme_line(f"| {stage} |")
        assert f"| {s['one']:.2f} | {s['two']:.2f} | {s['two_over_one']:.2f} |" in line, line


def test_featurize_memory_table_is_its_results_file():
    r = results("featurize_memory.json")
    assert r["commit"] and r["command"].startswith("benchmarks/featurize_memory.py")
    for run in r["runs"]:
        line = readme_line(f"| {run['run']} |")
        q = r["memory_vs_30s"].get(run["run"])
        assert f"| {run['peak_tree_mib']:.0f} / {run['peak_largest_mib']:.0f} MiB |" in line, line
        if q:
            assert f"| {q['tree']:.2f}× / {q['largest']:.2f}× |" in line, line


def test_label_memory_before_and_after_are_their_results_files():
    cells = []
    for name in ("label_memory_before.json", "label_memory.json"):
        r = results(name)
        assert r["commit"] and r["command"].startswith("benchmarks/label.py"), name
        runs, q = r["runs"], r["memory_vs_30s"][r["runs"][-1]["run"]]
        cells.append((" / ".join(f"{x['peak_largest_mib']:.0f}" for x in runs) + f" MiB ({q['largest']:.2f}× at 4 h)",
                      " / ".join(f"{x['peak_tree_mib']:.0f}" for x in runs) + f" MiB ({q['tree']:.2f}×)"))
    assert f"| {cells[0][0]} | {cells[1][0]} |" in readme_line("| largest process, 30 s / 1 h / 4 h timeline |")
    assert f"| {cells[0][1]} | {cells[1][1]} |" in readme_line("| job's process tree, same |")


def test_the_training_speed_and_schedule_figures_are_their_results_files():
    fast, before, stopped = (results(f)["train_test_metrics"]["history"] for f in
                             ("robustness-fast-8.json", "robustness-smooth.json", "robustness-fast.json"))
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    line = text[text.index("**Training within the hour.**"):][:2200]
    for a, b, key in ((before, fast, "train_seconds"), (before, fast, "epoch_seconds")):
        assert f"{_span([h[key] for h in a], '{:.0f}')} → {_span([h[key] for h in b], '{:.0f}')} s" in line, key
    val = [[h["epoch_seconds"] - h["train_seconds"] for h in x] for x in (before, fast)]
    assert f"validation and checkpoint {_span(val[0], '{:.0f}')} → {_span(val[1], '{:.0f}')} s" in line
    assert f"{results('robustness-smooth.json')['train_wall_s']:,.0f} → {results('robustness-fast-8.json')['train_wall_s']:,.0f} s" in line
    s = results("robustness-fast.json")
    assert s["train_test_metrics"]["epochs_run"] == 6 and s["train_test_metrics"]["best_epoch"] == 3
    assert f"validation loss {min(h['val_loss'] for h in stopped):.3f}, against {min(h['val_loss'] for h in fast):.3f}" in line
    c = s["conditions"].values()
    assert f"clips {_span([x['clip_accuracy'] * 100 for x in c], '{:.1f}')}%, speech F1 " \
           f"{_span([x['ours']['speech']['f1'] for x in c])}" in line, line


def test_the_two_runs_of_the_recipe_are_their_results_files():
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    line = text[text.index("**One run does not settle a target"):][:800]
    for name in ("robustness-smooth.json", "robustness-fast-8.json"):
        c = results(name)["conditions"]
        for key in ("music", "speech"):
            assert _span([x["ours"][key]["f1"] for x in c.values()]) in line, (name, key)
        for cond in ("telephone", "noise 10 dB"):
            assert f"{c[cond]['clip_accuracy'] * 100:.1f}%" in line, (name, cond)


def test_the_six_epoch_run_is_its_results_file():
    r = results("robustness-6ep.json")
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    line = text[text.index("**Training within the hour.**"):][:2200]
    assert f"train {r['train_wall_s']:,.0f} s" in line and f"featurize {r['featurize_wall_s']:.0f} s" in line, line
    assert r["train_args"][r["train_args"].index("--epochs") + 1] == "6"
    c = r["conditions"].values()
    for key in ("music", "speech"):
        f1 = [x["ours"][key]["f1"] for x in c]
        assert f"{min(f1):.3f}-{max(f1):.3f}" in line, (key, line)
    acc = [x["clip_accuracy"] * 100 for x in c]
    assert f"clip accuracy {min(acc):.1f}-{max(acc):.1f}%" in line, line


def test_the_switch_cost_sweep_is_its_results_files():
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    line = text[text.index("The gain does not hinge on the value"):][:500]
    for name, cost in (("robustness-smooth-1.5.json", "1.5"), ("robustness-smooth-5.json", "5")):
        r = results(name)
        assert r["label_args"] == ["--class-prior", "noise=0.6", "--switch-cost", cost]
        f1 = {k: [x["ours"][k]["f1"] for x in r["conditions"].values()] for k in ("speech", "music")}
        assert f"{min(f1['speech']):.3f}-{max(f1['speech']):.3f}" in line and f"{min(f1['music']):.3f}-{max(f1['music']):.3f}" in line


def test_the_leave_source_out_timelines_are_their_results_files():
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    line = text[text.index("**The smoothing holds on sources never trained on"):][:1000]
    off, on = (results(f)["leave_source_out_timelines"] for f in ("robustness-smooth-0.json", "robustness-smooth.json"))
    assert results("robustness-smooth-0.json")["label_args"] == ["--class-prior", "noise=0.6", "--switch-cost", "0"]
    assert f"{pair(off['all'])} → {pair(on['all'])}" in line, line
    for a, b in zip(off["per_fold"], on["per_fold"]):
        assert f"{pair(a)} → {pair(b)}" in line, line
    assert f"recall {on['all']['music']['recall']:.3f}" in line and f"precision {on['all']['speech']['precision']:.3f}" in line


def test_the_recipe_label_run_is_its_results_file():
    r = results("label-recipe.json")
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    line = text[text.index("**The recipe's model on the same kind of hour**"):][:900]
    seg = next(iter(r["segments_hour"].values()))
    assert f"{seg['music']['f1']:.3f} / {seg['speech']['f1']:.3f} on the hour" in line, line
    assert f"P / R {seg['music']['precision']:.3f} / {seg['music']['recall']:.3f}" in line
    runs = {x["run"]: x for x in r["runs"]}
    assert f"{runs['1-hour timeline']['realtime']:.1f}× realtime on the hour and {runs['4-hour timeline']['realtime']:.1f}×" in line
    first = next(x for x in r["runs"] if x["run"].startswith("one 30 s"))
    assert f"{first['peak_largest_mib']:.0f} → {runs['4-hour timeline']['peak_largest_mib']:.0f} MiB" in line
    assert f"{r['memory_vs_30s']['4-hour timeline']['largest']:.2f}× against the 1.5×" in line


def test_the_level_steps_run_is_its_results_files():
    r, base = results("robustness-level.json"), results("robustness-fast-8.json")
    assert "--augment-level-prob" not in r["featurize_args"] and r["commit"].startswith("771fc29") and not r["dirty"]
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    b = text[text.index("* **Level steps move the error"):][:2400]
    assert f"featurize {r['featurize_wall_s']:.0f} s + train {r['train_wall_s']:,.0f} s, best epoch " \
           f"{r['train_test_metrics']['best_epoch']}" in b
    c, c0 = r["conditions"], base["conditions"]
    for name, k, m in (("as is", "speech", "recall"), ("Ogg Vorbis ~30 kbit/s", "speech", "recall"),
                       ("as is", "music", "recall"), ("noise 10 dB", "music", "recall")):
        assert f"{c0[name]['ours'][k][m]:.3f} → {c[name]['ours'][k][m]:.3f}" in b, (name, k)
    six = [v for n, v in c.items() if not n.startswith("Ogg")]
    for k in ("music", "speech"):
        assert "F1 falls to " + _span([v["ours"][k]["f1"] for v in six]) in b or \
               "F1 to " + _span([v["ours"][k]["f1"] for v in six]) in b, k
    ogg = c["Ogg Vorbis ~30 kbit/s"]["ours"]
    assert f"Ogg Vorbis, {ogg['music']['f1']:.3f} / {ogg['speech']['f1']:.3f}" in b
    assert "Clips " + _span([v["clip_accuracy"] * 100 for v in c.values()], "{:.1f}") + "%" in b
    h0 = results("label-recipe.json")["segments_hour"]["default (30 s windows, ~1 s pooling)"]
    h = results("label-level.json")["segments_hour"]["default (30 s windows, ~1 s pooling)"]
    assert f"{h0['music']['f1']:.3f} / {h0['speech']['f1']:.3f} → {h['music']['f1']:.3f} / {h['speech']['f1']:.3f}" in b
    assert f"speech recall {h0['speech']['recall']:.3f} → {h['speech']['recall']:.3f}" in b
    line = text[text.index("The model trained with level steps (`robustness-level.json`) on the same hour"):][:500]
    assert f"{h['music']['f1']:.3f} / {h['speech']['f1']:.3f} (music P / R {h['music']['precision']:.3f} / " \
           f"{h['music']['recall']:.3f}, speech {h['speech']['precision']:.3f} / {h['speech']['recall']:.3f}) at " \
           f"{h['realtime']:.1f}× realtime" in line, line
    s1 = results("robustness-level-seed1.json")
    assert s1["train_args"][-2:] == ["--seed", "1"] and "0.5" in s1["featurize_args"] and not s1["dirty"]
    c1 = s1["conditions"].values()
    assert f"train {s1['train_wall_s']:,.0f} s) labeled worse still: music F1 " \
           f"{_span([v['ours']['music']['f1'] for v in c1])}, speech F1 {_span([v['ours']['speech']['f1'] for v in c1])}" \
           f", clips {_span([v['clip_accuracy'] * 100 for v in c1], '{:.1f}')}%" in b


def test_the_rerun_of_the_recipe_and_its_overlapping_windows_are_their_results_files():
    r, h = results("robustness-repro.json"), results("robustness-repro-hop15.json")
    assert r["train_args"] == results("robustness-fast-8.json")["train_args"] and not r["dirty"] and not h["dirty"]
    assert r["label_args"] == ["--class-prior", "noise=0.6"] and h["label_args"] == [*r["label_args"], "--hop-seconds", "15"]
    assert h["model"] == r["model"]
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    b = text[text.index("* **A rerun of the recipe falls below"):][:1500]
    assert f"featurize {r['featurize_wall_s']:.0f} s beside a test run + train {r['train_wall_s']:,.0f} s, best epoch " \
           f"{r['train_test_metrics']['best_epoch']})" in b
    c = r["conditions"]
    assert "clips " + _span([v["clip_accuracy"] * 100 for v in c.values()], "{:.1f}") + "%" in b
    for runs, lead in ((c, "labeled clips"), (h["conditions"], "does not steady it:")):
        m, sp = (_span([v["ours"][k]["f1"] for v in runs.values()]) for k in ("music", "speech"))
        assert f"music F1 {m}" in b[b.index(lead):] and f"speech F1 {sp}" in b[b.index(lead):], (lead, m, sp)
    assert sum(v["ours"]["speech"]["f1"] < 0.95 for v in c.values()) == 6
    assert sorted(n for n, v in c.items() if v["ours"]["music"]["f1"] < 0.95) == ["MP3 ~32 kbit/s", "noise 10 dB"]
    assert f"music recall {c['noise 10 dB']['ours']['music']['recall']:.3f} under noise" in b
    assert all("music-20" in " ".join(v["wrong_clips"]) for v in c.values())


def test_the_ensemble_is_its_results_file():
    e, r = results("robustness-ensemble.json"), results("robustness-repro.json")
    assert e["model"] == r["model"] and e["label_args"] == [*r["label_args"], "--ensemble", "/work/rb10/model.pt"]
    assert not e["dirty"]
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    b = text[text.index("* **Averaging two networks narrows"):][:1500]
    c, c0 = e["conditions"], r["conditions"]
    assert "clips " + _span([v["clip_accuracy"] * 100 for v in c.values()], "{:.1f}") + "%" in b
    assert "alone " + _span([v["clip_accuracy"] * 100 for v in c0.values()], "{:.1f}") + "%" in b
    for k in ("music", "speech"):
        assert f"{k} F1 " + _span([v["ours"][k]["f1"] for v in c.values()]) in b, k
    f1 = lambda runs, name, k: runs[name]["ours"][k]["f1"]
    assert all(f1(c, n, "speech") > f1(c0, n, "speech") for n in c)
    assert sum(f1(c, n, "music") > f1(c0, n, "music") for n in c) == 4
    for name, k in (("telephone", "speech"), ("MP3 ~32 kbit/s", "speech"), ("telephone", "music"), ("as is", "music")):
        assert f"{f1(c0, name, k):.3f} → {f1(c, name, k):.3f}" in b, (name, k)
    assert f"({f1(c, 'noise 10 dB', 'music'):.3f} / {f1(c, 'noise 10 dB', 'speech'):.3f})" in b
    assert _span([v["realtime"] for v in c.values()], "{:.1f}") + "× realtime" in b
    h0 = results("label-repro.json")["segments_hour"]["default (30 s windows, ~1 s pooling)"]
    h = results("label-ensemble.json")["segments_hour"]["default (30 s windows, ~1 s pooling)"]
    assert f"{h0['music']['f1']:.3f} / {h0['speech']['f1']:.3f} → {h['music']['f1']:.3f} / {h['speech']['f1']:.3f}, " \
           f"at {h['realtime']:.1f}× realtime" in b and f"alone ran {h0['realtime']:.1f}×" in b


def test_the_weight_average_is_its_results_files():
    e, r, en = results("robustness-ema.json"), results("robustness-repro.json"), results("robustness-ensemble.json")
    assert e["train_args"] == [*r["train_args"], "--ema-decay", "0.995"] and e["label_args"] == r["label_args"]
    assert not e["dirty"]
    b = readme_from("* **Averaging the weights of the last steps", 1800)
    c, c0 = e["conditions"], r["conditions"]
    assert f"train {e['train_wall_s']:,.0f} s on a quiet machine, best epoch {e['train_test_metrics']['best_epoch']})" in b
    assert_spans(b, c)
    assert all(f1(c, n, "speech") > f1(c0, n, "speech") for n in c)
    assert sum(f1(c, n, "music") > f1(c0, n, "music") for n in c) == 6
    assert f"{f1(c0, 'Ogg Vorbis ~30 kbit/s', 'music'):.3f}" == f"{f1(c, 'Ogg Vorbis ~30 kbit/s', 'music'):.3f}"
    for name, k in (("as is", "speech"), ("telephone", "speech"), ("noise 10 dB", "speech"), ("noise 10 dB", "music"),
                    ("as is", "music")):
        assert f"{f1(c0, name, k):.3f} → {f1(c, name, k):.3f}" in b, (name, k)
    ahead = {k: sum(f1(c, n, k) > f1(en["conditions"], n, k) for n in c) for k in ("music", "speech")}
    assert ahead == {"music": 6, "speech": 5} and "six conditions of seven for music and five for speech" in b
    hist = e["train_test_metrics"]["history"]
    assert all(a["val_loss"] > b_["val_loss"] for a, b_ in zip(hist[:-2], hist[1:-1])) and hist[-1]["val_loss"] > hist[-2]["val_loss"]
    assert f"({hist[0]['val_loss']:.3f} → {min(h['val_loss'] for h in hist):.3f})" in b
    assert f"{min(h['epoch_seconds'] for h in hist):.0f}-{max(h['epoch_seconds'] for h in hist):.0f} s" in b
    h = results("label-ema.json")["segments_hour"]["default (30 s windows, ~1 s pooling)"]
    assert f"F1 music / speech {h['music']['f1']:.3f} / {h['speech']['f1']:.3f}" in b
    assert f"at {h['realtime']:.1f}× realtime beside a training run" in b
    assert all(f1(c, n, "music") >= 0.95 for n in c)
    assert sorted(n for n in c if f1(c, n, "speech") < 0.95) == ["noise 10 dB", "telephone"]
    assert all("music-20" in " ".join(v["wrong_clips"]) and "speech-23" in " ".join(v["wrong_clips"]) for v in c.values())


def test_the_second_weight_average_run_is_its_results_file():
    a, s, r = results("robustness-ema.json"), results("robustness-ema-seed1.json"), results("robustness-repro.json")
    assert s["train_args"] == [*a["train_args"], "--seed", "1"] and s["label_args"] == a["label_args"]
    assert not s["dirty"]
    b = readme_from("A second run with `--seed 1`", 1100)
    c, c0 = s["conditions"], r["conditions"]
    assert f"train {s['train_wall_s']:,.0f} s, its first two epochs beside other work, best epoch " \
           f"{s['train_test_metrics']['best_epoch']})" in b
    assert_spans(b, c)
    assert sorted(n for n, v in c.items() if v["clip_accuracy"] == 1) == ["16 kHz", "MP3 ~32 kbit/s", "as is"]
    assert not any("speech-23" in " ".join(v["wrong_clips"]) for v in c.values())
    for k in ("music", "speech"):
        assert sum(f1(c, n, k) > f1(c0, n, k) for n in c) == 6, k
    assert f"{f1(c0, 'Ogg Vorbis ~30 kbit/s', 'speech'):.3f} → {f1(c, 'Ogg Vorbis ~30 kbit/s', 'speech'):.3f}" in b
    both = (a["conditions"], c)
    assert all(f1(x, n, "music") >= 0.95 for x in both for n in x)
    assert all(sum(f1(x, n, "speech") >= 0.95 for n in x) == 5 for x in both)
    for name, k, words in (("telephone", "speech", "telephone band (speech "), ("noise 10 dB", "speech", "noise (speech "),
                           ("noise 10 dB", "music", "music ")):
        assert words + "-".join(f"{v:.3f}" for v in sorted(f1(x, name, k) for x in both)) in b, (name, k)
    ina = a["conditions"]["noise 10 dB"]["ina"]
    assert f"under ina's {ina['music']['f1']:.3f} / {ina['speech']['f1']:.3f})" in b
    bad = [x[n]["clip_accuracy"] * 100 for x in both for n in ("telephone", "noise 10 dB")]
    assert f"their clips ({_span(bad, '{:.1f}')}%)" in b


def test_the_two_weight_average_runs_averaged_are_their_results_file():
    e = results("robustness-ema-ensemble.json")
    assert e["model"] == "/work/rb12/model.pt" and not e["dirty"]
    assert e["label_args"] == ["--class-prior", "noise=0.6", "--ensemble", "/work/rb13/model.pt"]
    b = readme_from("The two runs averaged (`--label-args=", 700)
    c = e["conditions"]
    assert_spans(b, c)
    assert sorted(n for n, v in c.items() if v["clip_accuracy"] < 0.984) == ["noise 10 dB"]
    assert f"noise {c['noise 10 dB']['clip_accuracy'] * 100:.1f}%" in b
    assert sorted(n for n, v in c.items() if v["ours"]["speech"]["f1"] < 0.95) == ["noise 10 dB", "telephone"]
    assert f"the telephone band {c['telephone']['ours']['speech']['f1']:.3f} and noise " \
           f"{c['noise 10 dB']['ours']['speech']['f1']:.3f}" in b
    assert _span([v["realtime"] for v in c.values()], "{:.1f}") + "× realtime" in b


def test_leave_source_out_with_the_weight_average_is_its_results_file():
    r, before = results("robustness-ema-lso.json"), results("robustness-bltrain.json")
    assert r["lso_args"] == [*before["lso_args"], "--ema-decay", "0.995"] and not r["dirty"]
    lso, old = r["leave_source_out"], before["leave_source_out"]
    b = readme_from("**Leave-source-out with the weight average: no better trade", 2800)
    pct = lambda v: f"{v * 100:.1f}%"  # noqa: E731
    folds = lambda x: " / ".join(f"{a * 100:.1f}" for a in x["fold_accuracies"])  # noqa: E731
    assert f"per fold {folds(lso)}% over all three classes (without the average {folds(old)}%)" in b
    assert f"{lso['wall_s']:,.0f} s" in b
    keys = ("corpus_music_speech_accuracy", "noise_recall", "gtzan_unseen_accuracy")
    assert f"music/speech clips {pct(lso[keys[0]])} (without it {pct(old[keys[0]])}), noise recall " \
           f"{pct(lso[keys[1]])} ({pct(old[keys[1]])}), GTZAN unseen {pct(lso[keys[2]])} ({pct(old[keys[2]])})" in b
    w6, o6, o5 = lso["noise_weight_sweep"]["0.6"], old["noise_weight_sweep"]["0.6"], old["noise_weight_sweep"]["0.5"]
    assert ", ".join(pct(w6[k]) for k in keys[:2]) + f" and {pct(w6[keys[2]])} (" + ", ".join(pct(o6[k]) for k in keys) + ")" in b
    assert f"its 0.5: {pct(o5[keys[0]])} and {pct(o5[keys[1]])}, against the average's {pct(lso[keys[0]])} and " \
           f"{pct(lso[keys[1]])}" in b
    assert o5[keys[0]] > lso[keys[0]] and o5[keys[1]] > lso[keys[1]]
    off, on = results("robustness-smooth.json")["leave_source_out_timelines"], r["leave_source_out_timelines"]
    assert f"{pair(off['all'])} → {pair(on['all'])}" in b
    assert ", ".join(f"{a['music']['f1']:.3f} → {c['music']['f1']:.3f}" for a, c in zip(off["per_fold"], on["per_fold"])) in b
    hop = results("lso-timelines-ema-hop15.json")
    assert hop["label_args"] == ["--class-prior", "noise=0.6", "--hop-seconds", "15"]
    assert hop["models"][0] == "/work/rb12/runs/lso/fold-0/model.pt" and not hop["dirty"]
    assert f"`--hop-seconds 15`: {pair(hop['leave_source_out_timelines']['all'])};" in b
    src = w6["per_source"]
    fx = [src[k] for k in ("qabcs-data(noises) (noise)", "scratch(sfx) (noise)", "tuxpaint-stamps-default(sfx) (noise)")]
    got = [f"{c.get('noise', 0)} of {sum(c.values())}" for c in fx]
    assert f"{got[0]}, {got[1]} and {got[2]} right" in b
    assert f"{lso['noise_clips_silent']} of the {lso['noise_clips']} noise clips" in b
    assert f"noise recall to {pct(lso['noise_recall_with_silence'])}" in b


def test_the_ten_epoch_run_is_its_results_file():
    t, e = results("robustness-ema-10ep.json"), results("robustness-ema.json")
    args = t["train_args"]
    assert args[args.index("--epochs") + 1] == args[args.index("--min-epochs") + 1] == "10" and not t["dirty"]
    assert [a for a in args if a != "10"] == [a for a in e["train_args"] if a != "8"]
    b = readme_from("What a longer schedule buys: nothing here.", 1000)
    assert f"train {t['train_wall_s']:,.0f} s" in b and f"best epoch {t['train_test_metrics']['best_epoch']}" in b
    best = lambda r: min(h["val_loss"] for h in r["train_test_metrics"]["history"])  # noqa: E731
    assert f"({best(t):.3f} against {best(e):.3f})" in b and best(t) < best(e)
    ct, ce = t["conditions"], e["conditions"]
    for k in ("music", "speech"):
        assert f"{k} F1 " + _span([v["ours"][k]["f1"] for v in ct.values()]) in b
        assert _span([v["ours"][k]["f1"] for v in ce.values()]) in b
    assert sum(f1(ct, n, "music") < f1(ce, n, "music") for n in ct) == 5
    assert sum(f1(ct, n, "speech") < f1(ce, n, "speech") for n in ct) == 6
    tel = "telephone"
    assert f"({f1(ce, tel, 'music'):.3f} / {f1(ce, tel, 'speech'):.3f} → {f1(ct, tel, 'music'):.3f} / {f1(ct, tel, 'speech'):.3f}" in b
    assert f"music recall {ce['noise 10 dB']['ours']['music']['recall']:.3f} → {ct['noise 10 dB']['ours']['music']['recall']:.3f}" in b
    assert f"its clips {ce[tel]['clip_accuracy'] * 100:.1f}% → {ct[tel]['clip_accuracy'] * 100:.1f}%" in b
    assert round((t["featurize_wall_s"] + t["train_wall_s"]) / 60) == 62 and f"featurize ({t['featurize_wall_s']:.0f} s)" in b


def pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def test_the_peer_on_the_held_out_clips_is_its_results_file():
    r = results("peer-corpus.json")
    assert r["lso_results"] == ["robustness-ema-lso", "robustness-speed-lso"] and not r["dirty"]
    b = readme_from("**The peer on the same held-out clips**", 1700)
    ina, ours = r["ina"], r["ours"]["robustness-ema-lso"]
    for d in (ina, ours["1.0"], ours["0.6"]):
        assert ", ".join(pct(d[k]) for k in ("corpus_music_speech_accuracy", "noise_recall", "gtzan_unseen_accuracy")) \
            in b.replace(" and ", ", "), d
    right = lambda d, key: pct(d["per_source"][key].get(key.rsplit("(", 1)[1][:-1], 0) / sum(d["per_source"][key].values()))  # noqa: E731
    for key in ("qabcs-data(noises) (noise)", "fretsonfire-songs-muldjord+sectoid (music)", "sonic-pi-samples (music)",
                "scratch(sfx) (noise)", "tuxpaint-stamps-default(sfx) (noise)"):
        assert right(ina, key) in b and right(ours["0.6"], key) in b, key
    assert right(ina, "asterisk-moh-opsound-wav (music)") in b


def test_the_speed_condition_is_its_results_file():
    r = results("robustness-speed-lso.json")
    assert "speed" in " ".join(r["featurize_args"]) and not r["dirty"] and "--ema-decay" in r["lso_args"]
    lso, lt = r["leave_source_out"], r["leave_source_out_timelines"]["all"]
    b = readme_from("**A `speed` condition (opt-in)", 1600)
    assert f"{lso['wall_s']:,.0f} s" in b and " / ".join(f"{a * 100:.1f}" for a in lso["fold_accuracies"]) in b
    for d in (lso, lso["noise_weight_sweep"]["0.6"]):
        assert ", ".join(pct(d[k]) for k in ("corpus_music_speech_accuracy", "noise_recall", "gtzan_unseen_accuracy")) \
            in b.replace("music/speech ", "").replace("noise recall ", "").replace("GTZAN unseen ", ""), d
    base = results("robustness-ema-lso.json")["leave_source_out_timelines"]["all"]
    assert f"music F1 falls {base['music']['f1']:.3f} → {lt['music']['f1']:.3f}" in b
    assert f"(speech {base['speech']['f1']:.3f} → {lt['speech']['f1']:.3f})" in b


def test_the_wider_network_cost_is_its_results_file():
    r = results("net-width.json")
    base, wide = r["runs"]
    assert wide["channels"] == [48, 96, 192] and not r["dirty"]
    b = readme_from("`--channels 48,96,192` trains a wider network", 500)
    assert f"{wide['vs_first']['parameters']:.2f}x the parameters, {wide['vs_first']['step_s']:.2f}x the time" in b
    assert f"({wide['step_s']:.2f} against {base['step_s']:.2f} s for {r['batch']} crops" in b


def test_the_wider_network_on_held_out_sources_is_its_results_file():
    r, base = results("robustness-wide-lso.json"), results("robustness-ema-lso.json")
    assert r["lso_args"] == [*base["lso_args"], "--channels", "48,96,192"] and not r["dirty"]
    lso, old = r["leave_source_out"], base["leave_source_out"]
    b = readme_from("**A wider network (`train --channels 48,96,192`)", 1600)
    folds = lambda x: " / ".join(f"{a * 100:.1f}" for a in x["fold_accuracies"])  # noqa: E731
    assert f"per fold {folds(lso)}% ({folds(old)}%)" in b and f"{lso['wall_s']:,.0f} s" in b
    keys = ("corpus_music_speech_accuracy", "noise_recall", "gtzan_unseen_accuracy")
    for new, was in ((lso, old), (lso["noise_weight_sweep"]["0.6"], old["noise_weight_sweep"]["0.6"])):
        assert f"{pct(new[keys[1]])}, {pct(new[keys[2]])} ({', '.join(pct(was[k]) for k in keys)})" in \
            b.replace("noise recall ", "").replace("GTZAN unseen ", "").replace("music/speech ", "").replace("% noise", "%, noise"), new
        assert pct(new[keys[0]]) in b
    lt, bt = r["leave_source_out_timelines"]["all"], base["leave_source_out_timelines"]["all"]
    assert f"{bt['music']['f1']:.3f} / {bt['speech']['f1']:.3f} → {lt['music']['f1']:.3f} / {lt['speech']['f1']:.3f}" in b
    src, was = lso["noise_weight_sweep"]["0.6"]["per_source"], old["noise_weight_sweep"]["0.6"]["per_source"]
    for key, label in (("warzone2100-music (music)", "music"), ("fretsonfire-songs-muldjord+sectoid (music)", "music"),
                       ("qabcs-data(noises) (noise)", "noise")):
        assert f"{was[key][label]} → {src[key][label]} of {sum(src[key].values())}" in b, key


def _three(d: dict) -> str:
    return ", ".join(pct(d[k]) for k in ("corpus_music_speech_accuracy", "noise_recall", "gtzan_unseen_accuracy"))


def _pair(t: dict) -> str:
    return f"{t['music']['f1']:.3f} / {t['speech']['f1']:.3f}"


def test_statistics_pooling_on_held_out_sources_is_its_results_files():
    r, base = results("robustness-stats-lso.json"), results("robustness-ema-lso.json")
    assert r["lso_args"] == [*base["lso_args"], "--pooling", "stats"] and not r["dirty"]
    lso, old = r["leave_source_out"], base["leave_source_out"]
    b = readme_from("**Statistics pooling (`train --pooling stats`)", 2400)
    flat = b.replace("music/speech ", "").replace("noise recall ", "").replace("GTZAN unseen ", "")
    folds = lambda x: " / ".join(f"{a * 100:.1f}" for a in x["fold_accuracies"])  # noqa: E731
    assert f"per fold {folds(lso)}% ({folds(old)}%)" in b and f"{lso['wall_s']:,.0f} s" in b
    assert f"{_three(lso)} ({_three(old)})" in flat
    w6, o6 = lso["noise_weight_sweep"]["0.6"], old["noise_weight_sweep"]["0.6"]
    assert f"{_three(w6)} ({_three(o6)})" in flat
    for key, label in (("qabcs-data(noises) (noise)", "noise"), ("scratch(sfx) (noise)", "noise"),
                       ("tuxpaint-stamps-default(sfx) (noise)", "noise"), ("fillets-ng-data-nl (speech)", "speech"),
                       ("fillets-ng-data-cs (speech)", "speech")):
        assert f"{o6['per_source'][key][label]} → {w6['per_source'][key][label]} of {sum(w6['per_source'][key].values())}" in b, key
    assert f"got segment F1 music / speech {_pair(r['leave_source_out_timelines']['all'])}" in b
    ctx, bt = results("lso-timelines-stats-context.json"), base["leave_source_out_timelines"]
    assert ctx["models"][0] == "/work/rb18/runs/lso/fold-0/model.pt" and not ctx["dirty"]
    assert ctx["label_args"] == ["--class-prior", "noise=0.6"]
    c = ctx["leave_source_out_timelines"]
    assert f"with that {_pair(c['all'])}" in b and f"pooling's {_pair(bt['all'])}" in b
    assert f"({_pair(c['per_fold'][1])} against {_pair(bt['per_fold'][1])})" in b
    s3, e3 = results("lso-timelines-stats-res3.json"), results("lso-timelines-ema-res3.json")
    assert s3["label_args"] == e3["label_args"] == ["--class-prior", "noise=0.6", "--resolution-seconds", "3"]
    assert e3["models"][0] == "/work/rb12/runs/lso/fold-0/model.pt" and not s3["dirty"] and not e3["dirty"]
    assert f"{_pair(s3['leave_source_out_timelines']['all'])} against {_pair(e3['leave_source_out_timelines']['all'])}" in b
    s10, e10 = results("lso-timelines-stats-w10.json"), results("lso-timelines-ema-w10.json")
    assert s10["label_args"] == e10["label_args"] == ["--class-prior", "noise=0.6", "--window-seconds", "10"]
    assert s10["models"][1] == "/work/rb18/runs/lso/fold-1/model.pt" and not s10["dirty"] and not e10["dirty"]
    b = readme_from("**Statistics pooling (`train --pooling stats`)", 3200)
    assert f"lift its fold 1 to {_pair(s10['leave_source_out_timelines']['per_fold'][1])} and all folds to " \
           f"{_pair(s10['leave_source_out_timelines']['all'])}, while the seed's pooling gets " \
           f"{_pair(e10['leave_source_out_timelines']['all'])}" in b


def test_both_networks_on_held_out_sources_are_their_results_files():
    e = results("lso-ensemble-ema-stats.json")
    assert e["works"] == ["/work/rb12", "/work/rb18"] and not e["dirty"]
    lso = e["leave_source_out"]
    b = readme_from("**Both networks (`label --ensemble`)", 1500)
    flat = b.replace("music/speech ", "").replace("noise recall ", "").replace("GTZAN unseen ", "")
    assert "per fold " + " / ".join(f"{a * 100:.1f}" for a in lso["fold_accuracies"]) + "%" in b
    assert _three(lso) in flat
    assert f"{_three(lso['noise_weight_sweep']['0.6'])}, and at 0.5 {_three(lso['noise_weight_sweep']['0.5'])}" in flat
    assert lso["noise_weight_sweep"]["0.5"]["corpus_music_speech_accuracy"] >= 0.95
    t, one = results("lso-timelines-ensemble-ema-stats.json"), results("robustness-ema-lso.json")
    assert t["ensemble_args"][2] == ["--ensemble", "/work/rb18/runs/lso/fold-2/model.pt"] and not t["dirty"]
    assert f"{_pair(t['leave_source_out_timelines']['all'])} against one network's " \
           f"{_pair(one['leave_source_out_timelines']['all'])}" in b


def test_ten_second_label_windows_on_the_gtzan_conditions_are_their_results_file():
    w, base = results("robustness-ema-w10.json"), results("robustness-ema.json")
    assert w["label_args"] == ["--class-prior", "noise=0.6", "--window-seconds", "10"] and not w["dirty"]
    assert w["model"] == base["model"] == "/work/rb12/model.pt"
    b = readme_from("**10 s label windows trade the codecs", 1200)
    assert_spans(b, w["conditions"])
    for name in ("Ogg Vorbis ~30 kbit/s", "noise 10 dB"):
        assert f"{pair(base['conditions'][name]['ours'])} → {pair(w['conditions'][name]['ours'])}" in b, name
    t, tw = base["conditions"]["telephone"], w["conditions"]["telephone"]
    assert f"speech {f1(base['conditions'], 'telephone', 'speech')} → {f1(w['conditions'], 'telephone', 'speech')}, " \
           f"clips {t['clip_accuracy'] * 100:.1f}% → {tw['clip_accuracy'] * 100:.1f}%" in b
    tl, tl30 = results("lso-timelines-ema-w10.json"), results("robustness-ema-lso.json")
    assert f"level ({_pair(tl['leave_source_out_timelines']['all'])} against " \
           f"{_pair(tl30['leave_source_out_timelines']['all'])}, above)" in b


def test_montage_on_held_out_sources_is_its_results_file():
    m, o = results("robustness-montage-lso.json"), results("robustness-ema-lso.json")
    assert "montage" in m["featurize_args"][m["featurize_args"].index("--augment-kinds") + 1] and not m["dirty"]
    assert m["lso_args"] == o["lso_args"]
    lm, lo = m["leave_source_out"], o["leave_source_out"]
    st = results("robustness-stats-lso.json")["leave_source_out"]
    b = readme_from("**Montage copies (`featurize", 2600)
    flat = b.replace("music/speech ", "").replace("noise recall ", "").replace("GTZAN unseen ", "")
    folds = lambda lso: " / ".join(f"{a * 100:.1f}" for a in lso["fold_accuracies"])   # noqa: E731
    assert f"per fold {folds(lm)}% ({folds(lo)}%)" in b and f"{lm['wall_s']:,.0f} s)" in b
    assert f"{_three(lm)} ({_three(lo)})" in flat
    w6, o6, s6 = (x["noise_weight_sweep"]["0.6"] for x in (lm, lo, st))
    assert f"{_three(w6)} ({_three(o6)}; statistics pooling {_three(s6)})" in flat
    assert f"at 0.5 {_three(lm['noise_weight_sweep']['0.5'])}" in flat
    assert lm["noise_weight_sweep"]["0.5"]["corpus_music_speech_accuracy"] >= 0.95
    for key, label in (("fillets-ng-data-nl (speech)", "speech"), ("qabcs-data(noises) (noise)", "noise")):
        assert f"{o6['per_source'][key][label]} → {w6['per_source'][key][label]} of {sum(w6['per_source'][key].values())}" in b
    others = [abs(w6["per_source"][k].get(k.rsplit("(", 1)[1][:-1], 0) - o6["per_source"][k].get(k.rsplit("(", 1)[1][:-1], 0))
              for k in o6["per_source"] if k not in ("fillets-ng-data-nl (speech)", "qabcs-data(noises) (noise)")]
    assert max(others) <= 2                                          # "every other source within two clips"
    tm, to = m["leave_source_out_timelines"], o["leave_source_out_timelines"]
    assert f"{_pair(tm['all'])} against {_pair(to['all'])}" in b
    f2m, f2o = tm["per_fold"][2], to["per_fold"][2]
    assert f"({f2m['music']['f1']:.3f} against {f2o['music']['f1']:.3f}; recall {f2m['music']['recall']:.3f} " \
           f"against {f2o['music']['recall']:.3f}" in b


def test_the_recipe_with_montage_is_its_results_file():
    m = results("robustness-montage.json")
    runs = [results("robustness-ema.json")["conditions"], results("robustness-ema-seed1.json")["conditions"]]
    assert "montage" in m["featurize_args"][-1] and m["label_args"] == ["--class-prior", "noise=0.6"] and not m["dirty"]
    c = m["conditions"]
    b = readme_from("The recipe with montage copies (`benchmarks/robustness.py", 1400)
    assert f"featurize {m['featurize_wall_s']:.0f} s + train {m['train_wall_s']:,.0f} s = " \
           f"{(m['featurize_wall_s'] + m['train_wall_s']) / 60:.0f} min" in b
    assert f"best epoch {m['train_test_metrics']['best_epoch']})" in b
    assert_spans(b, c)
    best = [k for k in c if all(f1(c, k, "music") > f1(r, k, "music") for r in runs)]
    below = [k for k in c if all(f1(c, k, "speech") < f1(r, k, "speech") for r in runs)]
    assert len(best) == 6 and set(below) == {"8 kHz", "MP3 ~32 kbit/s", "telephone", "noise 10 dB"}
    assert ", ".join(f"{f1(c, k, 'speech'):.3f}" for k in ("8 kHz", "MP3 ~32 kbit/s", "telephone", "noise 10 dB")) in b
    assert f"as is {f1(c, 'as is', 'music')}, ina's {c['as is']['ina']['music']['f1']:.3f}" in b
    assert f"{c['as is']['ina']['music']['f1'] - c['as is']['ours']['music']['f1']:.4f} short" in b
    assert f"the telephone band {f1(c, 'telephone', 'music')})" in b
    rec = [v["ours"]["speech"]["recall"] for v in c.values()]
    prec = [v["ours"]["speech"]["precision"] for v in c.values()]
    assert f"speech recall {min(rec):.3f}-{max(rec):.3f} at a precision of {min(prec):.3f}-{max(prec):.3f}" in b
