"""The README's figures are the numbers in benchmarks/results/*.json: one place for each figure. A table row
the README quotes from a results file must carry that file's numbers (rerun the benchmark, then paste)."""

import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_line(start: str) -> str:
    lines = [x for x in open(os.path.join(REPO, "README.md")).read().splitlines() if x.startswith(start)]
    assert len(lines) == 1, f"README should have one line starting {start!r}, has {len(lines)}"
    return lines[0]


def results(name: str) -> dict:
    with open(os.path.join(REPO, "benchmarks", "results", name)) as f:
        return json.load(f)


def test_robustness_table_is_its_results_file():
    r = results("robustness.json")
    assert r["commit"] and r["command"].startswith("benchmarks/robustness.py") and r["machine"]["cpus"]
    for name, c in r["conditions"].items():
        line = readme_line(f"| {name} |")
        assert f"{c['clip_accuracy'] * 100:.1f}%" in line, line
        for k in ("music", "speech"):
            assert f"{c['ours'][k]['f1']:.3f}" in line, (k, line)
            if c.get("ina"):
                assert f"{c['ina'][k]['f1']:.3f}" in line, (k, line)


def test_augment_costs_are_their_results_file():
    r = results("augment.json")
    for k, ms in r["ms_per_30s_clip_one_thread"].items():
        assert f"{ms:.1f}" in readme_line(f"| step `{k}` |"), k


def test_label_table_is_its_results_file():
    r = results("label.json")
    text = open(os.path.join(REPO, "README.md")).read()
    for run in r["runs"]:
        assert f"| {run['realtime']:.1f}× | {run['realtime_with_startup']:.1f}× | " \
               f"{run['peak_tree_mib']:.0f} / {run['peak_largest_mib']:.0f} MiB" in text, run["run"]
    for ev in r["segments_hour"].values():
        for k in ("music", "speech"):
            assert " / ".join(f"{ev[k][m]:.3f}" for m in ("precision", "recall", "f1")) in text, k


def test_ingest_table_is_its_results_file():
    r = results("ingest.json")
    for path, v in r["summary"].items():
        line = readme_line(f"| {path} | ")
        assert f"| {v['crops_per_s']:.2f} | {v['train_seconds_per_epoch']:.1f} | {v['data_load_seconds']:.1f} | " \
               f"{v['peak_memory_mb_per_worker']:.0f} | {v['test_accuracy']:.3f} |" in line, line
