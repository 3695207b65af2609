"""The README's "on your own archive" recipe trains what the robustness benchmark measures: its `music-speech
train` command and benchmarks/robustness.py's default training flags give the same TrainConfig."""

import dataclasses
import os
import shlex

from benchmarks.robustness import DEFAULT_TRAIN
from pipelines import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_command(start: str) -> list[str]:
    """The README's shell command starting `start`, its continuation lines joined, as argv after `start`."""
    text = open(os.path.join(REPO, "README.md")).read().replace("\\\n", " ")
    lines = [x.strip() for x in text.splitlines() if x.strip().startswith(start)]
    assert len(lines) == 1, f"README should have one command starting {start!r}, has {len(lines)}"
    return shlex.split(lines[0].split("#")[0])[len(shlex.split(start)):]


def test_readme_recipe_trains_the_benchmarks_recipe():
    argv = readme_command("music-speech train --features feats")
    where = ["--features", "feats", "--output", "runs", "--name", "archive"]
    readme = train.config_of(train.parse_args(["--features", "feats", *argv]))
    bench = train.config_of(train.parse_args([*where, *DEFAULT_TRAIN]))
    # --patience only matters after --min-epochs: with --min-epochs equal to --epochs the schedule runs whole
    assert readme.min_epochs == readme.epochs == bench.min_epochs == bench.epochs
    assert dataclasses.replace(readme, patience=bench.patience) == bench
