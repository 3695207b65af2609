"""What the benchmarks share: timelines whose boundaries fall anywhere, grid scoring, running a job as
its own process tree, and the results file (figures + commit, machine, command) the README quotes."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")


def random_timeline(clips: list[tuple[np.ndarray, str]], seconds: float, rng: np.random.Generator,
                    sr: int = 22050, lo: float = 3.0, hi: float = 30.0) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Random lo..hi s pieces of random clips [(audio, label)], each from a random offset, end to end until
    `seconds`: boundaries fall anywhere, never on a window edge by construction. Adjacent pieces of one
    label merge in the truth [(start, end, label)]."""
    xs, truth, t = [], [], 0.0
    while t < seconds - 1e-9:
        x, label = clips[int(rng.integers(len(clips)))]
        n = int(min(rng.uniform(lo, hi), len(x) / sr, seconds - t) * sr)
        if n <= 0:
            break
        a = int(rng.integers(0, len(x) - n + 1))
        xs.append(x[a:a + n])
        if truth and truth[-1][2] == label:
            truth[-1] = (truth[-1][0], t + n / sr, label)
        else:
            truth.append((t, t + n / sr, label))
        t += n / sr
    return np.concatenate(xs).astype(np.float32), truth


def combined(per_file: dict, segs_of) -> tuple[list, list]:
    """Truth and predictions of several timelines on one time axis."""
    truth, pred, off = [], [], 0.0
    for path, t in per_file.items():
        truth += [(s + off, e + off, k) for s, e, k in t]
        pred += [(s + off, e + off, k) for s, e, k in segs_of(path)]
        off += t[-1][1] + 1.0
    return truth, pred


def grid_eval(segs, truth, classes=("music", "speech"), step: float = 0.01) -> dict:
    """P/R/F1 per class on a `step` grid; segs and truth are [(start, end, label)]. Predicted labels
    outside `classes` (noise, silence, noEnergy) count as a miss for every class."""
    end = max(e for _, e, _ in truth)
    n = int(round(end / step))
    t = (np.arange(n) + 0.5) * step

    def paint(spans):
        lab = np.full(n, -1)
        for s, e, k in spans:
            if k in classes:
                lab[(t >= s) & (t < e)] = classes.index(k)
        return lab

    ref, hyp = paint(truth), paint(segs)
    res = {}
    for c, k in enumerate(classes):
        tp = int(np.sum((hyp == c) & (ref == c)))
        p = tp / max(int(np.sum(hyp == c)), 1)
        r = tp / max(int(np.sum(ref == c)), 1)
        res[k] = {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12)}
    res["accuracy"] = float(np.mean(hyp == ref))
    return res


def _processes() -> dict[int, tuple[int, int, int, str]]:
    """{pid: (ppid, RSS bytes, shared bytes of that RSS (file-backed and shared memory: Ray's object
    store, which every process that maps it counts again), name)} of every process, from /proc (Linux)."""
    page, procs = os.sysconf("SC_PAGE_SIZE"), {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/statm") as f:
                _, rss, shared = (int(v) * page for v in f.read().split()[:3])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except (OSError, ValueError, IndexError):
            continue
        # Ray workers name themselves (ray::_MapWorker, ray::MapBatches(...)); a script by its file
        name = argv[0] if argv and argv[0].startswith("ray::") else \
            " ".join(os.path.basename(a) for a in argv[:3 if argv[1:2] == ["-m"] else 2]) if argv else d
        procs[int(d)] = (ppid, rss, shared, name[:80])
    return procs


def tree_processes(pid: int) -> dict[int, tuple[int, int, str]]:
    """{pid: (RSS, shared part of it, name)} of pid and all its descendants."""
    procs, kids = _processes(), {}
    for q, (ppid, *_) in procs.items():
        kids.setdefault(ppid, []).append(q)
    todo, out = [pid], {}
    while todo:
        q = todo.pop()
        if q in procs:
            out[q] = procs[q][1:]
        todo.extend(kids.get(q, []))
    return out


def tree_rss(pid: int) -> tuple[int, int]:
    """(summed RSS, largest RSS) in bytes of pid and all its descendants."""
    rss = [r for r, _, _ in tree_processes(pid).values()] or [0]
    return sum(rss), max(rss)


class PeakMemory:
    """Samples a process tree: the peak of its summed RSS, and per process its peak RSS with the shared part
    and the name it had then (a Ray worker renames itself per task)."""

    def __init__(self, pid: int):
        self.pid, self.tree, self.each = pid, 0, {}

    def sample(self) -> None:
        procs = tree_processes(self.pid)
        self.tree = max(self.tree, sum(r for r, _, _ in procs.values()))
        for q, (rss, shared, name) in procs.items():
            if rss > self.each.get(q, (0,))[0]:
                self.each[q] = (rss, shared, name)

    def figures(self) -> dict:
        """peak_tree_mib, peak_largest_mib (the largest single process), which process that was, the shared
        part of its RSS, and the five largest processes' peaks."""
        top = sorted(self.each.values(), reverse=True)[:5]
        rss, shared, name = top[0] if top else (0, 0, "")
        return {"peak_tree_mib": self.tree / 2**20, "peak_largest_mib": rss / 2**20, "largest_process": name,
                "largest_shared_mib": shared / 2**20,
                "largest_processes": [{"name": n, "rss_mib": r / 2**20, "shared_mib": s / 2**20} for r, s, n in top]}


def run_job(job: str, args: list[str], log: str | None = None) -> tuple[str, dict]:
    """Run pipelines/<job>.py as its own process tree -> (its output, {wall_s, PeakMemory.figures(): the whole
    tree summed, the largest process and which it was}, sampled every 0.2 s)."""
    cmd = [sys.executable, os.path.join(REPO, "pipelines", f"{job}.py"), *args]
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
    peak = PeakMemory(proc.pid)

    def sample():
        while proc.poll() is None:
            peak.sample()
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if log:
            with open(log, "a") as f:
                f.write(line)
    proc.wait()
    th.join()
    out = "".join(lines)
    if proc.returncode != 0:
        sys.exit(f"{job}.py {' '.join(args)} failed ({proc.returncode}):\n{out[-4000:]}")
    return out, {"wall_s": time.time() - t0, **peak.figures()}


def done_line(out: str, job: str) -> str:
    m = re.findall(rf"^{job}: done: .*$", out, re.M)
    return m[-1] if m else ""


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls of fn, after one untimed warm-up call (imports, caches, filter design)."""
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def write_results(name: str, figures: dict) -> str:
    """benchmarks/results/<name>.json: the figures plus the commit, the machine and the command."""
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        # the code's state: a results file rewritten earlier in the same run (robustness.py writes twice) is not code
        dirty = bool(subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)benchmarks/results"], capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = None, None
    meta = {"commit": commit, "dirty": dirty, "command": " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                        "load_average_at_end": os.getloadavg()},
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump({**meta, **figures}, f, indent=2, sort_keys=True)
    return path
