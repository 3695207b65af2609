"""A file's local scores -> timeline -> segments -> file summary, plus the `silence` the signal level
finds (pure numpy: no I/O, no Ray).

Silence is not a class the network learns: the representation is normalized per window (dB relative to
the window's maximum, then min-max), so a silent stretch looks like any other once normalized - 10 s of
digital silence was called "music" at 0.99. Its absolute level decides instead, before normalization, as
inaSpeechSegmenter's energy detector does: stretches whose short-time RMS stays below `threshold_db`
dBFS for at least `min_seconds` become `silence`, over whatever the network said there.
"""

from __future__ import annotations

import numpy as np

SILENCE = "silence"


class LevelTracker:
    """Streams a file's decoded blocks (mono float32 at sr) and keeps the stretches whose RMS over
    `frame_seconds` frames is below threshold_db dBFS for at least min_seconds: O(1) memory per block."""

    def __init__(self, sr: int, threshold_db: float = -55.0, min_seconds: float = 1.0, frame_seconds: float = 0.05):
        self.sr, self.thr, self.min_s = sr, threshold_db, min_seconds
        self.frame = max(1, int(round(frame_seconds * sr)))
        self.rest = np.zeros(0, np.float32)
        self.pos = 0                                      # samples consumed into whole frames
        self.run_start = None                             # start sample of the current quiet run
        self.found: list[tuple[float, float]] = []

    def feed(self, block: np.ndarray) -> None:
        x = np.concatenate([self.rest, np.asarray(block, np.float32)])
        n = len(x) // self.frame
        if n:
            fr = x[:n * self.frame].reshape(n, self.frame).astype(np.float64)
            db = 10 * np.log10(np.mean(fr * fr, axis=1) + 1e-20)
            for i, quiet in enumerate(db < self.thr):
                self._step(bool(quiet), self.pos + i * self.frame)
            self.pos += n * self.frame
        self.rest = x[n * self.frame:]

    def _step(self, quiet: bool, at: int) -> None:
        if quiet and self.run_start is None:
            self.run_start = at
        elif not quiet and self.run_start is not None:
            self._close(at)

    def _close(self, end: int) -> None:
        if (end - self.run_start) / self.sr >= self.min_s:
            self.found.append((self.run_start / self.sr, end / self.sr))
        self.run_start = None

    def intervals(self) -> list[tuple[float, float]]:
        """The quiet stretches so far, the last one closed at the end of what was fed (a tail shorter
        than one frame counts as quiet when its RMS is)."""
        found, run, pos = list(self.found), self.run_start, self.pos
        if len(self.rest):
            quiet = 10 * np.log10(np.mean(self.rest.astype(np.float64) ** 2) + 1e-20) < self.thr
            if quiet and run is None:
                run = pos
            elif not quiet and run is not None:
                if (pos - run) / self.sr >= self.min_s:
                    found.append((run / self.sr, pos / self.sr))
                run = None
            pos += len(self.rest)
        if run is not None and (pos - run) / self.sr >= self.min_s:
            found.append((run / self.sr, pos / self.sr))
        return found


def timeline(starts, ends, probs) -> tuple[np.ndarray, np.ndarray]:
    """Local scores (spans + (n, C) probabilities, overlapping or not) -> (edges (m+1,), mean probabilities
    (m, C)) over the elementary intervals between all span edges."""
    starts, ends, probs = np.asarray(starts, float), np.asarray(ends, float), np.asarray(probs, float)
    edges = np.unique(np.concatenate([starts, ends]))
    i0, i1 = np.searchsorted(edges, starts), np.searchsorted(edges, ends)
    acc, cnt = np.zeros((len(edges), probs.shape[1])), np.zeros(len(edges))
    np.add.at(acc, i0, probs)
    np.add.at(acc, i1, -probs)
    np.add.at(cnt, i0, 1)
    np.add.at(cnt, i1, -1)
    acc, cnt = np.cumsum(acc, 0)[:-1], np.cumsum(cnt)[:-1]
    covered = cnt > 0.5
    mean = np.where(covered[:, None], acc / np.maximum(cnt, 1)[:, None], np.nan)
    # gaps (none in practice) take the previous interval's scores
    for i in np.nonzero(~covered)[0]:
        mean[i] = mean[i - 1] if i else np.full(probs.shape[1], 1.0 / probs.shape[1])
    return edges, mean


def smooth_labels(edges, mean, switch_cost: float, keep: int | None = None) -> np.ndarray:
    """The most likely label sequence (Viterbi) of a timeline: each interval costs -log p(label) per second,
    each change of label costs switch_cost (nats). A lone second the network doubts is absorbed by what
    surrounds it, a confident stretch survives: e.g. with cost 3, one ~1 s pause scored 0.95 `noise` between
    speech scored 0.9 costs 3.0 nats as speech against 2 x 3 for two changes, so it becomes speech, while two
    such seconds (6.0 nats) stay noise. Changes into or out of class `keep` (silence, decided by the signal
    level) are free, and its intervals stay it. -> (m,) class index per interval."""
    mean = np.asarray(mean, float)
    m, C = mean.shape
    if m == 0:
        return np.zeros(0, int)
    cost = -np.log(np.clip(mean, 1e-6, 1.0)) * np.diff(np.asarray(edges, float))[:, None]     # (m, C)
    trans = np.full((C, C), float(switch_cost))
    np.fill_diagonal(trans, 0.0)
    if keep is not None:
        trans[keep, :] = trans[:, keep] = 0.0
        forced = mean[:, keep] >= 1.0                    # silence intervals stay silence, the rest never is
        cost[forced] = np.inf
        cost[forced, keep] = 0.0
        cost[~forced, keep] = np.inf
    acc, back = cost[0].copy(), np.zeros((m, C), int)
    for i in range(1, m):
        tot = acc[:, None] + trans                       # (from, to)
        back[i] = np.argmin(tot, axis=0)
        acc = tot[back[i], np.arange(C)] + cost[i]
    lab = np.empty(m, int)
    lab[-1] = int(np.argmin(acc))
    for i in range(m - 1, 0, -1):
        lab[i - 1] = back[i, lab[i]]
    return lab


def segments(edges, mean, min_seconds: float = 0.0, keep: int | None = None,
             switch_cost: float = 0.0) -> list[tuple[float, float, int, float]]:
    """Elementary intervals -> [(start, end, class index, mean probability of that class)], adjacent
    intervals of one label merged. Labels: each interval's most probable class, or with switch_cost > 0 the
    most likely sequence (smooth_labels). Then segments shorter than min_seconds (shortest first) join their
    longer neighbour, so flicker disappears but a lone label that long or longer survives. Segments of class
    `keep` (silence, found from the signal level with its own minimum length) are never merged away nor
    grow: a short segment between two of them stays."""
    lab = smooth_labels(edges, mean, switch_cost, keep) if switch_cost > 0 else np.argmax(mean, axis=1)
    dur = np.diff(edges)
    runs = []  # [first interval, last interval + 1, label]
    for i, l in enumerate(lab):
        if runs and runs[-1][2] == l:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, int(l)])

    def length(r):
        return edges[r[1]] - edges[r[0]]

    fixed = set()                                          # (start, end) of short runs that cannot merge
    while len(runs) > 1:
        cand = [j for j in range(len(runs)) if runs[j][2] != keep and (runs[j][0], runs[j][1]) not in fixed]
        if not cand:
            break
        k = min(cand, key=lambda j: length(runs[j]))
        if length(runs[k]) >= min_seconds:
            break
        nb = [j for j in (k - 1, k + 1) if 0 <= j < len(runs) and runs[j][2] != keep]
        if not nb:
            fixed.add((runs[k][0], runs[k][1]))
            continue
        j = max(nb, key=lambda j: length(runs[j]))
        runs[k][2] = runs[j][2]
        merged = []
        for r in runs:
            if merged and merged[-1][2] == r[2]:
                merged[-1][1] = r[1]
            else:
                merged.append(list(r))
        runs = merged
    out = []
    for a, b, l in runs:
        w = dur[a:b]
        out.append((float(edges[a]), float(edges[b]), l, float((mean[a:b, l] * w).sum() / max(w.sum(), 1e-12))))
    return out


def file_summary(segs, mean, edges, classes) -> dict:
    """Label = the class holding most of the time; confidence = its mean probability over the file."""
    total = max(edges[-1] - edges[0], 1e-12)
    frac = np.zeros(len(classes))
    for s, e, l, _ in segs:
        frac[l] += (e - s) / total
    avg = (mean * np.diff(edges)[:, None]).sum(0) / total
    best = int(max(range(len(classes)), key=lambda c: (frac[c], avg[c])))
    return {"label": classes[best], "confidence": float(avg[best]),
            **{f"fraction_{c}": float(frac[i]) for i, c in enumerate(classes)}}


def with_silence(edges: np.ndarray, mean: np.ndarray, quiet) -> tuple[np.ndarray, np.ndarray]:
    """Timeline (edges (m+1,), probabilities (m, C)) + quiet stretches [(start, end)] -> the timeline cut
    at the stretches' edges with one more column, `silence`: 1 inside them (other classes 0), else 0."""
    C = mean.shape[1]
    if len(edges) < 2:
        return edges, np.zeros((0, C + 1))
    cuts = [t for s, e in quiet for t in (s, e) if edges[0] < t < edges[-1]]
    new = np.unique(np.concatenate([edges, np.asarray(cuts, float)]))
    mid = (new[:-1] + new[1:]) / 2
    src = np.clip(np.searchsorted(edges, mid, side="right") - 1, 0, len(mean) - 1)
    out = np.concatenate([mean[src], np.zeros((len(mid), 1))], axis=1)
    for s, e in quiet:
        inside = (mid > s) & (mid < e)
        out[inside] = 0.0
        out[inside, C] = 1.0
    return new, out
