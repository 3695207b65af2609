"""Project-side handle on the peer segmenter inaSpeechSegmenter: run it in ITS venv, get its JSON back.

Standard library only: ina (TensorFlow) is a benchmark peer, never a dependency of this project. It runs
benchmarks/peer_ina.py under /work/ina-venv (how to create that venv: benchmarks/PEER.md).

    from benchmarks.peer import run_ina       # or, from benchmarks/: from peer import run_ina
    res = run_ina(["/data/a.wav", "/data/b.wav"], "/tmp/ina-work")
    res["segments"]["/data/a.wav"]            # [[label, start_s, end_s], ...]; speech/music/noise/noEnergy
    res["x_realtime_with_load"], res["x_realtime_without_load"]
"""

from __future__ import annotations

import json
import os
import subprocess

INA_PYTHON = "/work/ina-venv/bin/python"
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_ina.py")


def _check_venv(ina_python: str) -> None:
    if not os.access(ina_python, os.X_OK):
        venv = os.path.dirname(os.path.dirname(ina_python))
        raise FileNotFoundError(
            f"inaSpeechSegmenter's venv is missing: {ina_python} does not exist or cannot run. Create the venv "
            f"{venv} as benchmarks/PEER.md says (tensorflow-cpu + inaspeechsegmenter==0.8.0 --no-deps + the "
            f"model .hdf5 in ~/.keras/inaSpeechSegmenter/), or pass ina_python=")


def _load(out: str, paths: list[str]) -> dict:
    """ina.json, checked: it covers exactly paths, and no file failed (else an error naming the first)."""
    with open(out, encoding="utf-8") as f:
        res = json.load(f)
    if set(res["segments"]) | set(res["errors"]) != set(paths):
        raise FileExistsError(f"{out} holds ina's result for other files than these {len(paths)}: "
                              f"use another work_dir or remove it")
    if res["errors"]:
        path, msg = next(iter(res["errors"].items()))
        raise RuntimeError(f"ina failed on {len(res['errors'])} of {len(paths)} files (all in {out}); "
                           f"first: {path}: {msg}")
    return res


def run_ina(wav_paths, work_dir: str, ina_python: str = INA_PYTHON, threads: int | None = None,
            timeout_s: float | None = None) -> dict:
    """Segment wav_paths with ina (smn engine) in its own venv; return peer_ina.py's JSON as a dict.

    work_dir receives ina_wavs.txt and ina.json. A finished ina.json for exactly these paths is returned as
    it is (a rerun never redoes nor destroys a finished result); one for other paths is an error naming it.
    """
    paths = [os.path.abspath(p) for p in wav_paths]
    if not paths:
        raise ValueError("run_ina: wav_paths is empty")
    _check_venv(ina_python)
    os.makedirs(work_dir, exist_ok=True)
    out = os.path.join(work_dir, "ina.json")
    if os.path.exists(out):
        return _load(out, paths)
    wav_list = os.path.join(work_dir, "ina_wavs.txt")
    with open(wav_list, "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in paths))
    # -I: isolated mode, so neither the project's folder nor PYTHONPATH leaks into ina's interpreter
    cmd = [ina_python, "-I", SCRIPT, "--wavs", wav_list, "--out", out]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if not os.path.exists(out):
        raise RuntimeError(f"ina ({ina_python}) failed with exit code {proc.returncode} and wrote no "
                           f"{out}; its stderr ends:\n{proc.stderr[-2000:]}")
    return _load(out, paths)
