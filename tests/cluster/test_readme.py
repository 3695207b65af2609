"""cluster/README.md: every job command it shows runs the real job's argparse, and each job is shown
submitted to a cluster the way the issue asks (`ray job submit --address ... --working-dir . -- python ...`)."""

import json
import os
import re

import pytest

from tests.cluster.helpers import CLUSTER, JOBS, commands_in_text, parse_job_command

README = open(os.path.join(CLUSTER, "README.md")).read()


def test_every_job_command_parses():
    commands = commands_in_text(README)
    assert {argv[1] for argv in commands} == {f"pipelines/{j}.py" for j in JOBS}
    for argv in commands:
        parse_job_command(argv)


def test_each_job_is_submitted_with_ray_job_submit():
    joined = re.sub(r"\s*\\\n\s*", " ", README)
    for job in JOBS:
        assert re.search(rf"ray job submit --address \S+ --working-dir \. (--runtime-env-json '[^']*' )?-- "
                         rf"python pipelines/{job}\.py", joined), job


def test_sizing_section_shows_its_arithmetic():
    assert "100,000 h × 3600 s/h ÷ 30 s" in README and "12,000,000" in README
    # label: the measured CPU rate with its arithmetic; the GPU rate is marked as not measured, not invented
    assert "not measured" in README


def test_sizing_and_scaling_figures_are_the_scaling_results_file():
    path = os.path.join(CLUSTER, "..", "benchmarks", "results", "scaling.json")
    if not os.path.exists(path):
        pytest.skip("benchmarks/results/scaling.json not written yet: run `.venv/bin/python benchmarks/scaling.py`")
    stages = json.load(open(path))["stages"]
    per_core = stages["label"]["two"] / 2                             # audio-s per core-second, 2 cores
    core_hours = round(100_000 * 3600 / round(per_core, 1) / 3600, -2)
    assert f"{stages['label']['two']:.1f}× realtime on 2 cores" in README
    assert f"100,000 h × 3600 ÷ {per_core:.1f} ÷ 3600 | **~{core_hours:,.0f} core-hours**" in README
    for stage, s in stages.items():
        assert f"| {s['one']:.2f} | {s['two']:.2f} | **{s['two_over_one']:.2f}** |" in README, stage
    assert f"{stages['featurize']['two_over_one']:.2f}× from 1 to 2 CPUs here" in README
