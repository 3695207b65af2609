"""The labeling job's two Ray stages (plain data in, plain data out; pipelines/label.py wires them):

  1. window_rows (a function, Ray tasks): stream-decode each file, cut it into windows exactly as
     featurize does (pipelines/windows.py), featurize each window to its uint8 index; the file's last row
     carries its row count and its quiet stretches (model/segments.py LevelTracker); a file that does not
     decode ends with an error row.
  2. Scorer (a class, an actor pool): loads the checkpoint once and scores windows in batches, one
     probability vector per ~resolution-seconds stretch of each window (the feature map pooled locally).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from model import FastConv3D, FeatureConfig, featurize
from model.segments import LevelTracker
from pipelines import storage
from pipelines.storage import S3Options
from pipelines.windows import STEP, iter_windows

# ------------------------------------------------------------------------------------------------
# stage 1 (CPU): stream-decode, window (pipelines/windows.py, as featurize does), featurize

WINDOW_SCHEMA = pa.schema([("uri", pa.string()), ("seq", pa.int64()), ("final", pa.bool_()), ("n_rows", pa.int64()),
                           ("start", pa.float64()), ("n_samples", pa.int64()), ("duration", pa.float64()),
                           ("n_mels", pa.int32()), ("n_frames", pa.int32()), ("index", pa.binary()),
                           ("status", pa.string()), ("error", pa.string()),
                           # on a file's final row: its quiet stretches (seconds), from the absolute level
                           ("silence_start", pa.list_(pa.float64())), ("silence_end", pa.list_(pa.float64()))])
WINDOW_FIELDS = tuple(WINDOW_SCHEMA.names)
PASSED = ("uri", "seq", "final", "n_rows", "duration", "status", "error", "silence_start", "silence_end")
SCORE_SCHEMA = pa.schema([*[WINDOW_SCHEMA.field(k) for k in PASSED],
                          ("unit_start", pa.list_(pa.float64())), ("unit_end", pa.list_(pa.float64())),
                          ("probs", pa.list_(pa.float64()))])


def window_rows(batch: dict, cfg_dict: dict, hop_seconds: float, s3: S3Options | None, windows_per_yield: int = 4,
                silence: tuple[float, float] = (-55.0, 1.0)):
    """Ray Data UDF (generator): files -> one row per featurized window. Every file ends with a row marked
    final carrying its row count and its quiet stretches (silence = (threshold dBFS, minimum seconds));
    a file that fails to decode ends with a row of status 'error'."""
    import torch

    torch.set_num_threads(1)
    cfg = FeatureConfig.from_dict(cfg_dict)
    rows = {k: [] for k in WINDOW_FIELDS}

    def add(uri, seq, final, start, n, dur, index, status="ok", error=None, quiet=()):
        for k, v in zip(WINDOW_FIELDS, (uri, seq, final, seq + 1 if final else 0, start, n, dur,
                                        0 if index is None else index.shape[0], 0 if index is None else index.shape[1],
                                        b"" if index is None else index.tobytes(), status, error,
                                        [a for a, _ in quiet], [b for _, b in quiet])):
            rows[k].append(v)

    def flush():
        out = pa.table({k: rows[k] for k in WINDOW_FIELDS}, schema=WINDOW_SCHEMA)
        for v in rows.values():
            v.clear()
        return out

    for uri in batch["uri"]:
        uri, seq, pending = str(uri), 0, None
        level = LevelTracker(cfg.sample_rate, *silence)
        try:
            for w in iter_windows(uri, cfg, hop_seconds, s3, level.feed):
                if pending is not None:
                    add(uri, seq, False, *pending)
                    seq += 1
                    if len(rows["uri"]) >= windows_per_yield:
                        yield flush()
                pending = (w.start, w.n, w.seconds, featurize(w.samples, cfg.sample_rate, cfg).numpy())
            add(uri, seq, True, *pending, quiet=level.intervals() if silence[1] > 0 else ())
        except storage.DecodeError as e:  # a broken file; storage retried transient I/O, the rest is a bug: raise
            add(uri, seq, True, 0.0, 0, 0.0, None, "error", str(e))
        if rows["uri"]:
            yield flush()


# ------------------------------------------------------------------------------------------------
# stage 2 (actors): the network

def pool_steps_for(resolution_seconds: float, cfg: FeatureConfig) -> int | None:
    """Feature-map steps pooled per local score (None: one score per window)."""
    if resolution_seconds <= 0:
        return None
    return max(1, int(resolution_seconds * cfg.sample_rate / cfg.hop_length / STEP))


def unit_spans(start: float, n_samples: int, n_frames: int, pool_steps: int | None, cfg: FeatureConfig):
    """Time spans (starts, ends) of a window's local scores, clipped to its true samples."""
    end = start + n_samples / cfg.sample_rate
    if pool_steps is None:
        return np.array([start]), np.array([end])
    steps = n_frames // STEP
    n = -(-steps // pool_steps)
    step_s = STEP * cfg.hop_length / cfg.sample_rate
    s = start + np.arange(n) * pool_steps * step_s
    e = np.minimum(start + np.minimum((np.arange(n) + 1) * pool_steps, steps) * step_s, end)
    e[-1] = end                                                     # the last few frames belong to the last unit
    keep = s < end
    return s[keep], e[keep]


class Scorer:
    """Ray Data actor: loads the checkpoint (and --ensemble's) once, scores batches of windows."""

    def __init__(self, checkpoint: bytes, resolution_seconds: float, threads: int, device: str = "cpu",
                 exact_plain: bool = False, class_prior: dict | None = None, ensemble: tuple[bytes, ...] = ()):
        import torch

        from model import load_checkpoint

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        # (network, its fast forward or None, the time steps its crops spanned in training), --model first
        self.members, self.device = [], device
        for data in (checkpoint, *ensemble):
            net, cfg, ckpt = load_checkpoint(io.BytesIO(data))
            if net.time_stride != STEP:   # the time spans of the local scores assume the seed's three blocks
                raise ValueError(f"the checkpoint's network pools time by {net.time_stride}; the labeling job's "
                                 f"windows assume {STEP} (pipelines/windows.py STEP)")
            if self.members and (cfg != self.cfg or list(net.cfg.classes) != self.classes):
                raise ValueError("the ensemble's checkpoints differ in features or classes")
            self.cfg, self.classes = cfg, list(net.cfg.classes)
            self.members.append((net.to(device), None if exact_plain else FastConv3D(net, cfg.n_bins, device=device),
                                 int(ckpt.get("eval_crop_frames", 0)) // STEP or None))   # --pooling stats' span
        self.pool_steps = pool_steps_for(resolution_seconds, self.cfg)
        # --class-prior: each class's probability times its weight, renormalized (log weight added to its logit)
        self.log_prior = torch.log(torch.tensor([float((class_prior or {}).get(k, 1.0)) for k in self.classes]))

    def logits(self, index, member: int = 0):
        """(B, n_local, C) logits of a batch of uint8 indices by one network. On the CPU one window per pass: a
        pass holds ~100 MB of activations per 30 s window, and the batch of 4 in one pass made this actor the job's
        largest process, growing with the file because a 30 s file's only batch holds 1 window (peak RSS in a
        bare process 1156 against 735 MiB; the actor 861 / 1545 / 1595 MiB for 30 s / 1 h / 4 h, one window
        per pass 832 / 1138 / 1132), at the same CPU time per window (0.77 against 0.79 s, identical logits).
        A GPU, and the plain network (--plain: PyTorch's batch-1 convolution is its slow im2col kernel),
        take the batch in one pass."""
        import torch

        from model import expand

        net, fast, context = self.members[member]

        def one_pass(ix):
            if fast is not None:
                return fast.local_logits(ix, self.pool_steps, context)
            x = expand(ix.to(self.device), self.cfg.n_bins)
            return net(x)[:, None] if self.pool_steps is None else net.local_logits(x, self.pool_steps, context)

        per_pass = 1 if self.device == "cpu" and fast is not None else len(index)
        with torch.inference_mode():
            return torch.cat([one_pass(index[i:i + per_pass]) for i in range(0, len(index), per_pass)])

    def probs(self, index):
        """(B, n_local, C) probabilities: the members' probabilities averaged, times --class-prior, renormalized."""
        import torch

        logp = torch.stack([torch.log_softmax(self.logits(index, m).float().cpu(), dim=-1)
                            for m in range(len(self.members))])                      # (M, B, n_local, C)
        mean = torch.logsumexp(logp, dim=0) - float(np.log(len(self.members)))         # log of the mean probability
        return torch.softmax(mean + self.log_prior, dim=-1)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        t = batch.to_pydict()
        n = len(t["uri"])
        starts, ends, probs = [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)]
        ok = [i for i in range(n) if t["status"][i] == "ok"]
        groups = {}
        for i in ok:
            groups.setdefault((t["n_mels"][i], t["n_frames"][i]), []).append(i)
        for (h, w), idx in groups.items():
            index = torch.from_numpy(np.stack([np.frombuffer(t["index"][i], np.uint8).reshape(h, w) for i in idx]))
            p = self.probs(index).numpy()                                                  # (B, n_local, C)
            for j, i in enumerate(idx):
                s, e = unit_spans(t["start"][i], t["n_samples"][i], w, self.pool_steps, self.cfg)
                starts[i], ends[i], probs[i] = s.tolist(), e.tolist(), p[j, :len(s)].reshape(-1).tolist()
        out = {k: t[k] for k in PASSED}
        out.update(unit_start=starts, unit_end=ends, probs=probs)
        return pa.table(out, schema=SCORE_SCHEMA)


# ------------------------------------------------------------------------------------------------
# a file's rows -> its file row and segments (the pure parts are in model/segments.py)
