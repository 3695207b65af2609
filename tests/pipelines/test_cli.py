"""The music-speech console command and what a job prints by default (subprocesses: a real command line,
a job with its own local Ray)."""

import io
import os
import subprocess
import sys
import tomllib

import numpy as np
import soundfile as sf

from pipelines import cli, console

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = REPO
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_entry_point_and_help():
    scripts = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["project"]["scripts"]
    assert scripts == {"music-speech": "pipelines.cli:main"}

    r = run("-m", "pipelines.cli", "--help")
    assert r.returncode == 0, r.stderr
    assert list(cli.JOBS) == ["featurize", "train", "label", "quickstart"]
    for job in cli.JOBS:
        assert any(line.split()[:1] == [job] for line in r.stdout.splitlines()), r.stdout

    r = run("-m", "pipelines.cli", "label", "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: music-speech label") and "--model" in r.stdout and "--verbose" in r.stdout

    r = run("-m", "pipelines.cli", "label", "--output", "x")          # the job's own argument errors
    assert r.returncode == 2 and "music-speech label: error" in r.stderr and "--model" in r.stderr
    r = run("-m", "pipelines.cli", "segment")
    assert r.returncode == 2 and "unknown subcommand 'segment'" in r.stderr


def test_progress_line_on_a_terminal_and_in_logs():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    p = console.Progress("label", 4, stream=tty)
    p.last = 0.0                       # as if the last line were long ago: this update writes
    p.update(2, 7200.0, 1)
    p.close()
    text = tty.getvalue()
    assert text.startswith("\rlabel: 2/4 files, 2.000 h of audio, ") and ", 1 errors, " in text
    assert text.count("\n") == 1 and text.endswith("\n") and "ETA" in text

    log = io.StringIO()
    p = console.Progress("featurize", 3, every=10.0, stream=log)
    p.update(1, 30.0)                  # within 10 s of the start: nothing yet
    p.last -= 10.0
    p.update(2, 60.0)
    p.close()
    assert log.getvalue().count("\n") == 1 and "\r" not in log.getvalue()
    assert log.getvalue().startswith("featurize: 2/3 files, 0.017 h of audio, ")


def test_job_prints_no_ray_info_by_default(tmp_path):
    audio = tmp_path / "audio"
    t = np.arange(3 * 22050) / 22050
    for label, x in (("music", 0.3 * np.sin(2 * np.pi * 440 * t)),
                     ("speech", 0.3 * np.random.default_rng(0).standard_normal(t.size))):
        os.makedirs(audio / "train" / label)
        sf.write(audio / "train" / label / f"{label}.wav", x.astype(np.float32), 22050)
    r = run("pipelines/featurize.py", "--input", str(audio), "--output", str(tmp_path / "features"),
            "--window-seconds", "1")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    lines = out.splitlines()
    assert [x for x in lines if "INFO" in x or "Running Dataset" in x or "Execution plan" in x
            or "execution finished" in x] == [], out
    assert any(x.startswith("featurize: done: 2 files, 6 windows,") for x in lines), out
    assert len(lines) <= 6, out
