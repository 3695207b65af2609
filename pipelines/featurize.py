"""featurize: audio (local folder, s3:// prefix or manifest CSV) -> Parquet shards of uint8 colormap indices.

Ray Data lists nothing itself: the driver lists the files, then Ray maps decode + window + featurize over
them in parallel and writes zstd Parquet; nothing runs until the write.

    # embedded default: generate demo audio, featurize it on a local Ray
    python pipelines/featurize.py
    # a folder or bucket, on a cluster
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python pipelines/featurize.py --input s3://bucket/audio --output s3://bucket/features

Output (readable with plain pyarrow/pandas, see README "Feature shards"):
    OUT/shards/<run>/*.parquet   one row per window (schema: FEATURE_SCHEMA)
    OUT/errors.parquet           uri, error: the files that could not be decoded
    OUT/feature_config.json      the FeatureConfig (also in each shard's schema metadata)
    OUT/_SUCCESS.json            written last: the finished runs and the summary; readers need it
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

if __package__ in (None, ""):  # `python pipelines/featurize.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from model import FeatureConfig, featurize  # noqa: E402
from pipelines import storage  # noqa: E402
from pipelines.storage import S3Options  # noqa: E402

FEATURE_SCHEMA = pa.schema([
    ("uri", pa.string()),               # source file
    ("window_start", pa.float64()),     # seconds into the file
    ("window_duration", pa.float64()),  # true seconds of audio in the window (the last one is zero-padded)
    ("label", pa.string()),             # music | speech | null
    ("split", pa.string()),             # train | test | val | null
    ("sample_rate", pa.int32()),        # the file's own rate and channel count, before resampling/down-mix
    ("channels", pa.int32()),
    ("n_mels", pa.int32()),
    ("n_frames", pa.int32()),
    ("index", pa.binary()),             # uint8 magma index, row-major (n_mels, n_frames)
])
ERROR_SCHEMA = pa.schema([("uri", pa.string()), ("error", pa.string())])


# ------------------------------------------------------------------------------------------------
# the CPU stage: plain functions

def windows(x: np.ndarray, cfg: FeatureConfig) -> tuple[np.ndarray, list[float], list[float]]:
    """(T,) -> (n, window_samples) zero-padded windows, their starts and true durations in seconds."""
    w = cfg.window_samples
    n = max(1, -(-len(x) // w))
    padded = np.zeros(n * w, np.float32)
    padded[: len(x)] = x
    starts = [i * cfg.window_seconds for i in range(n)]
    durs = [min(w, len(x) - i * w) / cfg.sample_rate for i in range(n)]
    return padded.reshape(n, w), starts, durs


def featurize_files(batch: dict, cfg_dict: dict, s3: S3Options | None, errors_dir: str) -> pa.Table:
    """Ray Data UDF: a batch of {uri, label, split} -> one row per window. Decode errors are caught per
    file and written to errors_dir, so one bad file never takes the good ones in its block down."""
    import torch

    torch.set_num_threads(1)  # one task per CPU: no oversubscription
    cfg = FeatureConfig.from_dict(cfg_dict)
    rows = {name: [] for name in FEATURE_SCHEMA.names}
    errors = []
    for uri, label, split in zip(batch["uri"], batch["label"], batch["split"]):
        try:
            x, info = storage.decode(str(uri), cfg.sample_rate, s3)
            wins, starts, durs = windows(x, cfg)
            index = featurize(wins, cfg.sample_rate, cfg).numpy()          # (n, n_mels, n_frames) uint8
        except storage.DecodeError as e:  # a broken file; storage retried transient I/O, the rest is a bug: raise
            errors.append((str(uri), str(e)))
            continue
        for i in range(len(wins)):
            rows["uri"].append(str(uri))
            rows["window_start"].append(starts[i])
            rows["window_duration"].append(durs[i])
            rows["label"].append(None if label is None else str(label))
            rows["split"].append(None if split is None else str(split))
            rows["sample_rate"].append(info.sample_rate)
            rows["channels"].append(info.channels)
            rows["n_mels"].append(index.shape[1])
            rows["n_frames"].append(index.shape[2])
            rows["index"].append(index[i].tobytes())
    if errors:
        err = pa.table({"uri": [u for u, _ in errors], "error": [m for _, m in errors]}, schema=ERROR_SCHEMA)
        storage.write_table(storage.join(errors_dir, f"{uuid.uuid4().hex}.parquet"), err, s3)
    schema = FEATURE_SCHEMA.with_metadata({"feature_config": json.dumps(cfg_dict)})
    return pa.table(rows, schema=schema)


def index_of(row: dict) -> np.ndarray:
    """A shard row -> its uint8 index (n_mels, n_frames); model.expand() turns it into the dense tensor."""
    return np.frombuffer(row["index"], np.uint8).reshape(row["n_mels"], row["n_frames"])


# ------------------------------------------------------------------------------------------------
# output layout: a finished output has _SUCCESS.json, written last

def marker_uri(out: str) -> str:
    return storage.join(out, "_SUCCESS.json")


def finished_shards(out: str, s3: S3Options | None = None) -> tuple[list[str], FeatureConfig]:
    """The shard folders of a finished featurize output and its FeatureConfig; raises if unfinished."""
    if not storage.exists(marker_uri(out), s3):
        raise storage.StorageError(f"{out} holds no finished featurize output (no _SUCCESS.json)")
    done = storage.read_json(marker_uri(out), s3)
    return [storage.join(out, "shards", r) for r in done["runs"]], FeatureConfig.from_dict(done["feature_config"])


def read_rows(out: str, s3: S3Options | None = None, columns: list[str] | None = None) -> pa.Table:
    """All rows of a finished output with plain pyarrow (no Ray)."""
    dirs, _ = finished_shards(out, s3)
    tables = [storage.read_table(d, s3, columns) for d in dirs]
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else FEATURE_SCHEMA.empty_table().select(columns or FEATURE_SCHEMA.names)


# ------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Featurize audio into Parquet shards of uint8 magma indices (one row per window) on Ray.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", help="folder or s3:// prefix of audio (WAV/FLAC/OGG/MP3), searched recursively; "
                                   "labels/splits come from .../<split>/<music|speech>/file paths. "
                                   "Default: generate a demo set into <output>/../demo_audio")
    p.add_argument("--manifest", help="CSV of path,label[,split] to use instead of --input")
    p.add_argument("--output", default="demo_out/features", help="output folder or s3:// prefix")
    p.add_argument("--window-seconds", type=float, default=30.0, help="window length (the seed's clip is 30 s)")
    p.add_argument("--n-mels", type=int, default=128)
    p.add_argument("--overwrite", action="store_true", help="replace a finished output")
    p.add_argument("--resume", action="store_true", help="keep a finished output and featurize only new files")
    p.add_argument("--repeat", type=int, default=1, help="list the input N times over (benchmarking)")
    p.add_argument("--files-per-task", type=int,
                   help="files per Ray task (= per Parquet shard); default: the files spread over 4 tasks per "
                        "CPU, at most 32 (a 30 s clip takes ~25 ms, Ray Data ~70 ms to dispatch a task here)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs reserved per featurize task")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    a = p.parse_args(argv)
    if a.overwrite and a.resume:
        p.error("--overwrite and --resume exclude each other")
    if a.files_per_task is not None and a.files_per_task < 1:
        p.error("--files-per-task must be >= 1")
    if a.input and a.manifest:
        p.error("give --input or --manifest, not both")
    return a


def list_inputs(a, s3: S3Options) -> list[dict]:
    if a.manifest:
        return storage.read_manifest(a.manifest, s3)
    items = []
    for uri in storage.list_audio(a.input, s3):
        label, split = storage.label_and_split(uri)
        items.append({"uri": uri, "label": label, "split": split})
    return items


def main(argv=None) -> int:
    a = parse_args(argv)
    s3 = S3Options.from_env(a.endpoint_url)
    cfg = FeatureConfig(window_seconds=a.window_seconds, n_mels=a.n_mels)
    out = a.output
    try:
        storage.check_output(out, s3)
        if not a.input and not a.manifest:
            from pipelines.demo import write_demo

            a.input = storage.join(out.rstrip("/"), "..", "demo_audio") if not storage.is_s3(out) else storage.join(out, "demo_audio")
            a.input = os.path.normpath(a.input) if not storage.is_s3(out) else a.input
            write_demo(a.input, per_class=8, seconds=30.0, s3=s3)
            print(f"featurize: no --input given: generated a demo set in {a.input}")
        items = list_inputs(a, s3)
    except (storage.StorageError, ValueError) as e:
        print(f"featurize: error: {e}", file=sys.stderr)
        return 2
    if not items:
        print(f"featurize: error: no audio files (.wav .flac .ogg .mp3) found in {a.input or a.manifest}", file=sys.stderr)
        return 2

    # Reruns never destroy finished output: refuse, resume, or (explicitly) overwrite.
    previous_runs = []
    if storage.exists(marker_uri(out), s3):
        done = storage.read_json(marker_uri(out), s3)
        if a.overwrite:
            for sub in ("shards", "errors", "errors.parquet", "feature_config.json", "_SUCCESS.json"):
                storage.remove(storage.join(out, sub), s3)
        elif a.resume:
            if done["feature_config"] != cfg.to_dict():
                print(f"featurize: error: {out} was featurized with another config: {done['feature_config']}", file=sys.stderr)
                return 2
            previous_runs = list(done["runs"])
            have = set(read_rows(out, s3, ["uri"]).column("uri").to_pylist())
            items = [it for it in items if it["uri"] not in have]
            print(f"featurize: --resume: {len(have)} files already featurized, {len(items)} to go")
        else:
            print(f"featurize: error: {out} already holds a finished run ({done.get('files')} files); "
                  "pass --resume to add new files or --overwrite to replace it", file=sys.stderr)
            return 2
    else:  # leftovers of a run that died: never marked finished, so not output; clear them
        storage.remove(storage.join(out, "shards"), s3)
        storage.remove(storage.join(out, "errors"), s3)
    items = items * max(1, a.repeat)

    import ray
    from ray.data import TaskPoolStrategy

    if not ray.is_initialized():  # tests and notebooks may have started Ray already
        ray.init(address=a.address or os.environ.get("RAY_ADDRESS") or "local")  # "local": never attach to a cluster someone else started here
    t0 = time.time()
    run = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_dir, errors_dir = storage.join(out, "shards", run), storage.join(out, "errors", run)
    n_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    print(f"featurize: {len(items)} files -> {run_dir} on {n_cpus} CPUs (window {cfg.window_seconds:g} s, "
          f"{cfg.n_mels} mels)", flush=True)

    if items:
        per_task = a.files_per_task or max(1, min(32, -(-len(items) // (4 * n_cpus))))
        ds = ray.data.from_items(items, override_num_blocks=-(-len(items) // per_task))
        # Ray Data reserves part of the cluster for each operator by default; with one map operator on a
        # small cluster that left one task running at a time (measured: 2 CPUs ran no faster than 1).
        # Set on this dataset's own context (its successors inherit it), not the process-wide one.
        ds.context.op_resource_reservation_enabled = False
        ds = ds.map_batches(featurize_files, batch_size=per_task, batch_format="numpy",
                            fn_kwargs={"cfg_dict": cfg.to_dict(), "s3": s3, "errors_dir": errors_dir},
                            compute=TaskPoolStrategy(), num_cpus=a.num_cpus)  # Ray Data's default scheduling already SPREADs tasks over the nodes
        # no min_rows_per_file: Ray would bundle the (one-row-per-file) input blocks up to it and run
        # everything in one task; shard size is set by the files per task instead
        ds.write_parquet(storage.arrow_path(run_dir), filesystem=storage.arrow_fs(out, s3), compression="zstd")
    wall = time.time() - t0

    # Summary from what was written (cheap column reads), then the marker, last.
    rows = storage.read_table(run_dir, s3, ["uri", "window_duration"]) if storage.exists(run_dir, s3) else None
    n_windows = rows.num_rows if rows is not None and rows.num_rows else 0
    n_files = len(set(rows.column("uri").to_pylist())) if n_windows else 0
    seconds = float(pc.sum(rows.column("window_duration")).as_py()) if n_windows else 0.0
    errs = storage.read_table(errors_dir, s3) if storage.exists(errors_dir, s3) else ERROR_SCHEMA.empty_table()
    if previous_runs and storage.exists(storage.join(out, "errors.parquet"), s3):
        old = storage.read_table(storage.join(out, "errors.parquet"), s3)
        retried = set(it["uri"] for it in items)
        old = old.filter(pc.invert(pc.is_in(old.column("uri"), pa.array(list(retried), pa.string()))))
        errs = pa.concat_tables([old, errs.select(["uri", "error"]).cast(ERROR_SCHEMA)])
    storage.write_table(storage.join(out, "errors.parquet"), errs.cast(ERROR_SCHEMA), s3)
    n_errors = errs.num_rows
    if n_files == 0 and not previous_runs:
        print(f"featurize: error: no file could be featurized ({n_errors} errors, see "
              f"{storage.join(out, 'errors.parquet')})", file=sys.stderr)
        return 1
    runs = previous_runs + ([run] if n_windows else [])
    summary = {"runs": runs, "feature_config": cfg.to_dict(), "files": n_files, "windows": n_windows,
               "audio_hours": seconds / 3600, "errors": n_errors, "wall_seconds": wall,
               "clips_per_second": n_windows / wall if wall else 0.0, "schema": FEATURE_SCHEMA.names}
    if previous_runs:
        summary["files"] += storage.read_json(marker_uri(out), s3).get("files", 0)
    storage.write_json(storage.join(out, "feature_config.json"), cfg.to_dict(), s3)
    storage.write_json(marker_uri(out), summary, s3)
    print(f"featurize: done: {n_files} files, {n_windows} windows, {seconds / 3600:.3f} h of audio, "
          f"{n_errors} errors, {wall:.1f} s wall, {n_windows / wall:.2f} clips/s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
