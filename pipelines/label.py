"""label: bulk archive labeling (batch inference): audio of any length -> per-file labels and music/speech
segment timelines, on Ray Data.

    # a folder (or one file), locally
    python pipelines/label.py --input DIR --model model.pt --output OUT
    # a bucket, on a cluster (the checkpoint may be local to the driver or s3://)
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python pipelines/label.py --input s3://bucket/archive --model s3://bucket/model.pt --output s3://bucket/labels
    # more: --list uris.csv, --csv, --plot timeline.png [--plot-uri URI], --resume, --overwrite

The driver lists the files; Ray streams them through two stages and nothing runs until the driver
consumes the scored windows:
  1. decode + window + featurize (plain function, Ray tasks): storage.iter_decoded_blocks streams each
     file in blocks, so an hour-long file is never decoded whole; each analysis window (--window-seconds,
     --hop-seconds; default the checkpoint's window, no overlap) goes through model.featurize exactly as in
     training and travels as its uint8 colormap index. A file that fails to decode yields an error row.
  2. the network (a class, ActorPoolStrategy): loads the checkpoint once per actor and scores windows in
     batches. Segment resolution comes from the network being fully convolutional up to its global
     pooling: one pass over a long window pools the feature map over ~--resolution-seconds stretches
     (Conv3DNet.local_logits). `model.FastConv3D` computes the same numbers faster (tests prove equality):
     the first convolution becomes a table lookup on the uint8 index (its input is one-hot in the
     luminance layer), max pooling runs before ReLU/BatchNorm (both monotone per channel) and the
     convolutions call oneDNN directly.
The driver assembles each file's windows into a timeline (overlapping windows are averaged), merges
adjacent pieces of one label into segments, smooths segments shorter than --min-segment-seconds away,
and checkpoints finished files into OUT/parts/ so that --resume after a crash labels only the rest.

Output (plain Parquet; CSV too with --csv):
    OUT/files.parquet     uri, duration, label, confidence, fraction_music, fraction_speech, windows, status, error
    OUT/segments.parquet  uri, start, end, label, probability (mean probability of the label over the segment)
    OUT/label_config.json the model (uri, sha256) and the labeling settings
    OUT/_SUCCESS.json     written last: the summary; a finished output is refused without --resume/--overwrite
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import sys
import time
import uuid

if __package__ in (None, ""):  # `python pipelines/label.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from model import FastConv3D, FeatureConfig, featurize  # noqa: E402
from model.segments import SILENCE, LevelTracker, file_summary, segments, timeline, with_silence  # noqa: E402,F401
from pipelines import console, exports  # noqa: E402
from pipelines.windows import STEP, iter_windows  # noqa: E402
from pipelines import storage  # noqa: E402
from pipelines.report import plot_file  # noqa: E402
from pipelines.storage import S3Options  # noqa: E402

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
    """Ray Data actor: loads the checkpoint once, scores batches of windows."""

    def __init__(self, checkpoint: bytes, resolution_seconds: float, threads: int, device: str = "cpu",
                 exact_plain: bool = False):
        import torch

        from model import load_checkpoint

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        net, self.cfg, _ = load_checkpoint(io.BytesIO(checkpoint))
        self.net, self.device, self.classes = net.to(device), device, list(net.cfg.classes)
        self.fast = None if exact_plain else FastConv3D(net, self.cfg.n_bins, device=device)
        self.pool_steps = pool_steps_for(resolution_seconds, self.cfg)

    def logits(self, index):
        import torch

        from model import expand

        with torch.inference_mode():
            if self.fast is not None:
                return self.fast.local_logits(index, self.pool_steps)
            x = expand(index.to(self.device), self.cfg.n_bins)
            if self.pool_steps is None:
                return self.net(x)[:, None]
            return self.net.local_logits(x, self.pool_steps * STEP)

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
            p = torch.softmax(self.logits(index).float(), dim=-1).cpu().numpy()     # (B, n_local, C)
            for j, i in enumerate(idx):
                s, e = unit_spans(t["start"][i], t["n_samples"][i], w, self.pool_steps, self.cfg)
                starts[i], ends[i], probs[i] = s.tolist(), e.tolist(), p[j, :len(s)].reshape(-1).tolist()
        out = {k: t[k] for k in PASSED}
        out.update(unit_start=starts, unit_end=ends, probs=probs)
        return pa.table(out, schema=SCORE_SCHEMA)


# ------------------------------------------------------------------------------------------------
# a file's rows -> its file row and segments (the pure parts are in model/segments.py)

def file_schema(classes) -> pa.Schema:
    return pa.schema([("uri", pa.string()), ("duration", pa.float64()), ("label", pa.string()),
                      ("confidence", pa.float64()), *[(f"fraction_{c}", pa.float64()) for c in classes],
                      ("windows", pa.int32()), ("status", pa.string()), ("error", pa.string())])


SEGMENT_SCHEMA = pa.schema([("uri", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
                            ("label", pa.string()), ("probability", pa.float64())])


def assemble(rows: list[dict], classes, min_seconds: float) -> tuple[dict, list[dict]]:
    """All scored rows of one file -> (its file row, its segment rows). classes: the network's classes
    plus `silence` last (the quiet stretches of the final row, laid over the network's timeline)."""
    rows = sorted(rows, key=lambda r: r["seq"])
    uri, last = rows[0]["uri"], rows[-1]
    base = {"uri": uri, "duration": float(last["duration"]), "windows": sum(r["status"] == "ok" for r in rows)}
    nulls = {"label": None, "confidence": None, **{f"fraction_{c}": None for c in classes}}
    if last["status"] != "ok":
        return {**base, **nulls, "status": "error", "error": last["error"]}, []
    C = len(classes) - 1                                           # the network's classes
    s = np.concatenate([r["unit_start"] for r in rows])
    e = np.concatenate([r["unit_end"] for r in rows])
    p = np.concatenate([np.asarray(r["probs"], float).reshape(-1, C) for r in rows])
    edges, mean = timeline(s, e, p)
    edges, mean = with_silence(edges, mean, list(zip(last["silence_start"] or [], last["silence_end"] or [])))
    segs = segments(edges, mean, min_seconds, keep=C)
    frow = {**base, **file_summary(segs, mean, edges, classes), "status": "ok", "error": None}
    return frow, [{"uri": uri, "start": a, "end": b, "label": classes[l], "probability": q} for a, b, l, q in segs]


# ------------------------------------------------------------------------------------------------
# output layout

def marker_uri(out: str) -> str:
    return storage.join(out, "_SUCCESS.json")


def _read_dir(uri: str, s3, schema) -> pa.Table:
    if not storage.exists(uri, s3):
        return schema.empty_table()
    t = storage.read_table(uri, s3)
    return t.cast(schema) if t.num_rows else schema.empty_table()


def _ls(uri: str, s3) -> list[str]:
    """The entries of a folder/prefix as sorted URIs ([] when it does not exist)."""
    if not storage.exists(uri, s3):
        return []
    names = storage.get_fs(uri, s3).ls(storage.strip_scheme(uri), detail=False)
    return sorted(("s3://" + n) if storage.is_s3(uri) else n for n in names)


def _tagged(uri: str, s3, schema, src: int) -> pa.Table:
    t = _read_dir(uri, s3, schema)
    return t.append_column("src", pa.array(np.full(t.num_rows, src, np.int64)))


def read_output(out: str, s3: S3Options | None = None, classes=("music", "speech")) -> tuple[pa.Table, pa.Table]:
    """(files, segments) of an output: the final tables plus the parts of runs not yet consolidated; for
    a file labeled more than once (an error retried by --resume), the latest row wins. Exactly once: a
    file's segments come only from the source (final tables, or one run's part NNNNN) of its winning
    row, so parts left beside the final tables by a crash before their removal count once, and a
    segments part whose files part was never written (a crash between the two) counts not at all."""
    fs_ = file_schema(classes)
    files = [_tagged(storage.join(out, "files.parquet"), s3, fs_, 0)]
    segs = [_tagged(storage.join(out, "segments.parquet"), s3, SEGMENT_SCHEMA, 0)]
    for run in _ls(storage.join(out, "parts"), s3):
        for fpart in _ls(storage.join(run, "files"), s3):            # sorted: later parts win
            if not fpart.endswith(".parquet"):                      # a temp file a crash left mid-write
                continue
            name = fpart.rsplit("/", 1)[-1]
            files.append(_tagged(fpart, s3, fs_, len(files)))
            segs.append(_tagged(storage.join(run, "segments", name), s3, SEGMENT_SCHEMA, len(segs)))
    files, segs = pa.concat_tables(files), pa.concat_tables(segs)
    latest = {}
    for i, u in enumerate(files.column("uri").to_pylist()):
        latest[u] = i
    files = files.take(pa.array(sorted(latest.values()), pa.int64()))
    ok = files.filter(pc.equal(files.column("status"), "ok")).select(["uri", "src"])
    segs = segs.join(ok, keys=["uri", "src"], join_type="inner")
    return (files.drop_columns(["src"]).sort_by("uri"),
            segs.select(SEGMENT_SCHEMA.names).sort_by([("uri", "ascending"), ("start", "ascending")]))


class PartWriter:
    """Finished files are checkpointed to OUT/parts/<run>/{segments,files}/NNNNN.parquet (segments first:
    a file counts as labeled once its file row is written)."""

    def __init__(self, out, s3, classes, every_files=64, every_seconds=30.0):
        self.dir = storage.join(out, "parts", time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
        self.s3, self.schema, self.n = s3, file_schema(classes), 0
        self.files, self.segs, self.every, self.every_s, self.t = [], [], every_files, every_seconds, time.time()

    def add(self, frow, srows):
        self.files.append(frow)
        self.segs.extend(srows)
        if len(self.files) >= self.every or time.time() - self.t > self.every_s:
            self.flush()

    def flush(self):
        if not self.files:
            return
        name = f"{self.n:05d}.parquet"
        seg = pa.Table.from_pylist(self.segs, schema=SEGMENT_SCHEMA)
        storage.write_table(storage.join(self.dir, "segments", name), seg, self.s3)
        storage.write_table(storage.join(self.dir, "files", name), pa.Table.from_pylist(self.files, schema=self.schema), self.s3)
        self.files, self.segs, self.n, self.t = [], [], self.n + 1, time.time()


def collect(batches, todo: list[str], writer: PartWriter, classes, min_seconds: float, progress=None):
    """Scored batches -> each file assembled and checkpointed once all its rows are in; returns (files,
    errors, seconds of audio). Every file of todo ends with a row: one whose windows did not all come
    back becomes an error row saying so, never a silent gap."""
    pending: dict[str, list] = {}
    n_done = n_err = 0
    seconds = 0.0

    def finish(frow, srows):
        nonlocal n_done, n_err, seconds
        writer.add(frow, srows)
        n_done += 1
        n_err += frow["status"] != "ok"
        seconds += frow["duration"] if frow["status"] == "ok" else 0.0

    finished = set()
    for batch in batches:
        for r in batch.to_pylist():
            rows = pending.setdefault(r["uri"], [])
            rows.append(r)
            n_rows = max(x["n_rows"] for x in rows)
            if not n_rows or len(rows) < n_rows:
                continue
            finish(*assemble(pending.pop(r["uri"]), classes, min_seconds))
            finished.add(r["uri"])
        if progress is not None:
            progress.update(n_done, seconds, n_err)
    for uri in todo:
        if uri not in finished:
            got = len(pending.get(uri, []))
            msg = (f"{uri}: only {got} of its windows came back" if got else f"{uri}: its windows") + \
                " never came back from the workers"
            finish({**dict.fromkeys(writer.schema.names), "uri": uri, "duration": 0.0, "windows": 0,
                    "status": "error", "error": msg}, [])
    return n_done, n_err, seconds


# ------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Label an audio archive music/speech with a trained checkpoint on Ray: per-file labels "
                    "and segment timelines as Parquet.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", help="audio file, folder or s3:// prefix (WAV/FLAC/OGG/MP3, searched recursively)")
    p.add_argument("--list", help="CSV/text file of audio URIs (first column; relative paths are relative to it) "
                                  "instead of --input")
    p.add_argument("--extensions", type=storage.parse_extensions, default=storage.EXTENSIONS_ARG,
                   help=storage.EXTENSIONS_HELP)
    p.add_argument("--model", required=True, help="checkpoint (model.pt from the train job), local path or s3://")
    p.add_argument("--output", required=True, help="output folder or s3:// prefix")
    p.add_argument("--window-seconds", type=float, help="analysis window (default: the checkpoint's window)")
    p.add_argument("--hop-seconds", type=float, help="hop between windows (default: the window, no overlap)")
    p.add_argument("--resolution-seconds", type=float, default=1.0,
                   help="length of the local stretches the feature map is pooled over, one score each "
                        "(rounded down to whole feature-map steps of 8 frames); 0: one score per window")
    p.add_argument("--min-segment-seconds", type=float, default=2.0,
                   help="segments shorter than this join their neighbour (flicker smoothing); 0: off")
    p.add_argument("--silence-db", type=float, default=-55.0,
                   help="`silence`: stretches whose RMS over 50 ms frames stays below this many dBFS (the "
                        "absolute level of the decoded audio, before the per-window normalization)")
    p.add_argument("--silence-min-seconds", type=float, default=1.0,
                   help="shortest quiet stretch labeled `silence` (shorter pauses keep the network's label); "
                        "0: no silence detection")
    p.add_argument("--batch-size", type=int, default=4, help="windows per network call")
    p.add_argument("--actors", type=int, default=0,
                   help="network actors (0: one per GPU, else one 2-thread actor per 2 CPUs; on 2 cores that labeled "
                        "a 1-hour file at 85x realtime against 50x for two 1-thread actors, 128 clips at 72x "
                        "against 84x)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs Ray reserves per network actor")
    p.add_argument("--threads-per-actor", type=int, default=2, help="torch threads per network actor (CPU)")
    p.add_argument("--num-gpus-per-actor", type=float, default=0.0, help="GPUs per network actor (>0: run on GPU)")
    p.add_argument("--decode-cpus", type=float, default=0.5, help="CPUs Ray reserves per decode/featurize task")
    p.add_argument("--plain", action="store_true", help="use expand() + the plain network instead of the exact "
                                                        "fast forward (for checking; slower)")
    p.add_argument("--csv", action="store_true", help="also write files.csv and segments.csv")
    p.add_argument("--format", default="parquet", help="comma-separated output formats from "
                   f"{','.join(exports.FORMATS)} (parquet always; see pipelines/exports.py for where each goes)")
    p.add_argument("--plot", metavar="PNG", help="write a waveform/spectrogram + timeline PNG of one file")
    p.add_argument("--plot-uri", help="the file to plot (default: the first input file)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished output")
    p.add_argument("--resume", action="store_true", help="keep what is labeled in the output (finished or not) "
                                                         "and label only the rest (files with errors are retried)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    console.add_verbose(p)
    a = p.parse_args(argv)
    if a.overwrite and a.resume:
        p.error("--overwrite and --resume exclude each other")
    if bool(a.input) == bool(a.list):
        p.error("give exactly one of --input or --list")
    for name in ("window_seconds", "hop_seconds"):
        v = getattr(a, name)
        if v is not None and v <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if a.batch_size < 1:
        p.error("--batch-size must be >= 1")
    try:
        a.format = exports.parse_formats(a.format + (",csv" if a.csv else ""))
    except ValueError as e:
        p.error(f"--format: {e}")
    a.csv = "csv" in a.format
    return a


def _err(msg: str) -> None:
    print(f"label: error: {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    a = parse_args(argv)
    s3 = S3Options.from_env(a.endpoint_url)
    out = a.output
    try:
        from model import load_checkpoint

        storage.check_input(a.model, s3)
        ckpt_bytes = storage.read_bytes(a.model, s3)
        try:
            net, base_cfg, _ = load_checkpoint(io.BytesIO(ckpt_bytes))
        except Exception as e:
            raise ValueError(f"{a.model} is not a usable checkpoint: {type(e).__name__}: {e}") from e
        classes = [*net.cfg.classes, SILENCE]                     # what the outputs may say
        cfg = dataclasses.replace(base_cfg, window_seconds=a.window_seconds or base_cfg.window_seconds)
        hop = a.hop_seconds or cfg.window_seconds
        storage.check_output(out, s3)
        uris = [r["uri"] for r in storage.read_manifest(a.list, s3)] if a.list else storage.list_audio(a.input, s3, a.extensions)
    except (storage.StorageError, ValueError) as e:
        _err(str(e))
        return 2
    if not uris:
        _err(f"no audio files (of --extensions {','.join(a.extensions)}) found in {a.input or a.list}")
        return 2
    settings = {"model": a.model, "model_sha256": hashlib.sha256(ckpt_bytes).hexdigest(), "classes": classes,
                "feature_config": cfg.to_dict(), "hop_seconds": hop, "resolution_seconds": a.resolution_seconds,
                "min_segment_seconds": a.min_segment_seconds, "silence_db": a.silence_db,
                "silence_min_seconds": a.silence_min_seconds}

    # Reruns never destroy finished output: refuse, resume, or (explicitly) overwrite.
    cfg_uri, finished = storage.join(out, "label_config.json"), storage.exists(marker_uri(out), s3)
    have_ok = set()
    if a.overwrite or not a.resume:
        if finished and not a.overwrite:
            done = storage.read_json(marker_uri(out), s3)
            _err(f"{out} already holds a finished labeling run ({done.get('files')} files); pass --resume to "
                 "label only new files or --overwrite to replace it")
            return 2
        for sub in ("parts", "files.parquet", "segments.parquet", "files.csv", "segments.csv", "_SUCCESS.json",
                    *exports.OUTPUTS):
            storage.remove(storage.join(out, sub), s3)  # --overwrite, or leftovers of a run that died
    elif storage.exists(cfg_uri, s3):
        old = storage.read_json(cfg_uri, s3)
        if {k: old.get(k) for k in settings if k != "model"} != {k: v for k, v in settings.items() if k != "model"}:
            _err(f"{out} was labeled with another model or settings ({old}); use another --output or --overwrite")
            return 2
        files, _ = read_output(out, s3, classes)
        have_ok = set(files.filter(pc.equal(files.column("status"), "ok")).column("uri").to_pylist())
    storage.write_json(cfg_uri, settings, s3)
    todo = [u for u in uris if u not in have_ok]
    if a.resume:
        print(f"label: --resume: {len(uris) - len(todo)} files already labeled, {len(todo)} to go", flush=True)

    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    if not ray.is_initialized():  # tests and notebooks may have started Ray already
        console.init_ray(a.address or os.environ.get("RAY_ADDRESS") or "local", a.verbose)
    t0 = time.time()
    res = ray.cluster_resources()
    n_actors = a.actors or (max(1, int(res.get("GPU", 0) // a.num_gpus_per_actor)) if a.num_gpus_per_actor > 0
                            else max(1, int(res.get("CPU", 1) // 2)))
    device = "cuda" if a.num_gpus_per_actor > 0 else "cpu"
    steps = pool_steps_for(a.resolution_seconds, cfg)
    res_s = "window" if steps is None else f"{steps * STEP * cfg.hop_length / cfg.sample_rate:.3f} s"
    print(f"label: {len(todo)} files -> {out} with {n_actors} network actor(s) on {device} (window "
          f"{cfg.window_seconds:g} s, hop {hop:g} s, resolution {res_s})", flush=True)

    writer = PartWriter(out, s3, classes)
    n_done = n_err = 0
    seconds = 0.0
    progress = console.Progress("label", len(todo))
    if todo:
        ds = console.quiet(ray.data.from_items([{"uri": u} for u in todo], override_num_blocks=max(1, len(todo))),
                           a.verbose)
        # a few windows per block: hour-long files stream. On this dataset's own context (its successors
        # share it and the planner reads it from there), not the process-wide one
        ds.context.target_max_block_size = 4 * 1024 * 1024
        ds = ds.map_batches(window_rows, batch_size=1, batch_format="numpy", compute=TaskPoolStrategy(),
                            fn_kwargs={"cfg_dict": cfg.to_dict(), "hop_seconds": hop, "s3": s3,
                                       "silence": (a.silence_db, a.silence_min_seconds)},
                            num_cpus=a.decode_cpus)  # Ray Data SPREADs tasks by default
        ds = ds.map_batches(Scorer, batch_size=a.batch_size, batch_format="pyarrow",
                            fn_constructor_kwargs={"checkpoint": ckpt_bytes, "resolution_seconds": a.resolution_seconds,
                                                   "threads": a.threads_per_actor, "device": device,
                                                   "exact_plain": a.plain},
                            compute=ActorPoolStrategy(size=n_actors), num_cpus=a.cpus_per_actor,
                            num_gpus=a.num_gpus_per_actor or None)
        n_done, n_err, seconds = collect(ds.iter_batches(batch_size=None, batch_format="pyarrow"), todo, writer,
                                         classes, a.min_segment_seconds, progress)
        progress.close()
    writer.flush()
    wall = time.time() - t0

    files, segs = read_output(out, s3, classes)
    n_ok = int(pc.sum(pc.equal(files.column("status"), "ok")).as_py() or 0)
    if n_ok == 0:
        _err(f"no file could be labeled ({files.num_rows} errors)")
        return 1
    storage.write_table(storage.join(out, "files.parquet"), files, s3)
    storage.write_table(storage.join(out, "segments.parquet"), segs, s3)
    if a.csv:
        import pyarrow.csv as pacsv

        for name, t in (("files.csv", files), ("segments.csv", segs)):
            buf = io.BytesIO()
            pacsv.write_csv(t, buf)
            storage.write_bytes(storage.join(out, name), buf.getvalue(), s3)
    exports.write_exports(out, files, segs, a.format, s3)
    storage.remove(storage.join(out, "parts"), s3)
    if a.plot:
        puri = a.plot_uri or uris[0]
        plot_file(puri, segs.filter(pc.equal(segs.column("uri"), puri)), a.plot, cfg, s3)
        print(f"label: wrote the timeline plot of {puri} to {a.plot}", flush=True)
    total_h = float(pc.sum(files.column("duration")).as_py() or 0.0) / 3600
    n_errors = files.num_rows - n_ok
    summary = {"files": files.num_rows, "labeled": n_ok, "errors": n_errors, "audio_hours": total_h,
               "segments": segs.num_rows, "this_run": {"files": n_done, "errors": n_err, "audio_seconds": seconds,
                                                       "wall_seconds": wall, "realtime_factor": seconds / max(wall, 1e-9)},
               **settings}
    storage.write_json(marker_uri(out), summary, s3)
    print(f"label: done: {n_done} files, {seconds / 3600:.3f} h of audio, {n_err} errors, {wall:.1f} s wall, "
          f"{seconds / max(wall, 1e-9):.1f}x realtime -> {out} ({files.num_rows} files, {segs.num_rows} segments "
          f"in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
