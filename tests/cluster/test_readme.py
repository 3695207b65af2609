"""cluster/README.md: every job command it shows runs the real job's argparse, and each job is shown
submitted to a cluster the way the issue asks (`ray job submit --address ... --working-dir . -- python ...`)."""

import os
import re

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
    assert "100,000 h × 3600 ÷ 42.9 ÷ 3600" in README and "~2,300 core-hours" in README
    assert "not measured" in README
