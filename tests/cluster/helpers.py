"""Shared checks for the cluster configs: the commands they carry must run the real jobs' argparse."""

import argparse
import importlib
import os
import re
import shlex
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(REPO, "cluster")
JOBS = ("featurize", "train", "label")


def pyproject_deps() -> list[str]:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["dependencies"]


def parse_job_command(argv: list[str]) -> tuple[str, argparse.Namespace]:
    """`python pipelines/<job>.py FLAGS...` -> (job, namespace from the job's own parse_args).
    Stricter than argparse alone: every --flag must be spelled out in full (argparse would accept an
    abbreviation, so a flag misspelled as a prefix of a real one would pass), and nothing may be left."""
    assert argv[:1] == ["python"], f"not a `python pipelines/<job>.py` command: {argv}"
    script = argv[1]
    m = re.fullmatch(r"pipelines/(\w+)\.py", script)
    assert m, f"{script}: not a script under pipelines/"
    assert os.path.isfile(os.path.join(REPO, script)), f"{script} does not exist"
    module = importlib.import_module(f"pipelines.{m.group(1)}")
    parsers = []
    original = argparse.ArgumentParser.parse_args

    def recording(self, *a, **k):
        parsers.append(self)
        return original(self, *a, **k)

    argparse.ArgumentParser.parse_args = recording
    try:
        ns = module.parse_args(argv[2:])
    except SystemExit as e:
        raise AssertionError(f"{shlex.join(argv)}: the job's argparse rejects it (exit {e.code})") from None
    finally:
        argparse.ArgumentParser.parse_args = original
    known = set(parsers[0]._option_string_actions)
    for tok in argv[2:]:
        if tok.startswith("--"):
            flag = tok.split("=", 1)[0]
            assert flag in known, f"{script}: {flag} is not one of its flags (abbreviated or misspelled?)"
    return m.group(1), ns


def commands_in_text(text: str) -> list[list[str]]:
    """Every `python pipelines/<job>.py ...` command in a README or in YAML comments, continuation
    lines (trailing backslash) joined, as argv lists."""
    lines = [re.sub(r"^\s*#\s?", "", line) for line in text.splitlines()]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for m in re.finditer(r"python (pipelines/\w+\.py)([^\n`|;#]*)", joined):
        out.append(["python", m.group(1), *shlex.split(m.group(2))])
    return out
