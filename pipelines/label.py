"""label: bulk archive labeling (batch inference): audio of any length -> per-file labels and music/speech
segment timelines, on Ray Data.

    # a folder (or one file), locally
    python pipelines/label.py --input DIR --model model.pt --output OUT
    # a bucket, on a cluster (the checkpoint may be local to the driver or s3://)
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python pipelines/label.py --input s3://bucket/archive --model s3://bucket/model.pt --output s3://bucket/labels
    # more: --list uris.csv, --csv, --plot timeline.png [--plot-uri URI], --resume, --overwrite

The driver lists the files; Ray streams them through two stages (pipelines/scoring.py) and nothing runs
until the driver consumes the scored windows:
  1. decode + window + featurize (plain function, Ray tasks): each file is streamed in blocks (never
     decoded whole) and cut into the windows featurize cuts (pipelines/windows.py; --window-seconds,
     --hop-seconds; default the checkpoint's window, no overlap); each window travels as its uint8 index.
     Its absolute level is tracked on the way: quiet stretches become `silence`. A file that fails to
     decode yields an error row.
  2. the network (a class, ActorPoolStrategy): loads the checkpoint once per actor and scores windows in
     batches. Segment resolution comes from the network being fully convolutional up to its global
     pooling: one pass over a long window pools the feature map over ~--resolution-seconds stretches
     (Conv3DNet.local_logits). `model.FastConv3D` computes the same numbers faster (tests prove equality).
The driver (pipelines/label_output.py) assembles each file's windows into a timeline (overlapping windows
averaged, silence laid over it: model/segments.py), merges adjacent pieces of one label into segments,
smooths segments shorter than --min-segment-seconds away, and checkpoints finished files into OUT/parts/
so that --resume after a crash labels only the rest, each file exactly once.

Output (plain Parquet; CSV, Audacity, TextGrid, RTTM, SRT, WebVTT, JSON with --format):
    OUT/files.parquet     uri, duration, label, confidence, fraction_<label> per label, windows, status, error
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

if __package__ in (None, ""):  # `python pipelines/label.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import pyarrow.compute as pc  # noqa: E402

from model.segments import SILENCE, segments, timeline  # noqa: E402,F401  (timeline, segments: part of the API)
from pipelines import console, exports, storage  # noqa: E402
from pipelines.label_output import (SEGMENT_SCHEMA, PartWriter, assemble, collect, file_schema,  # noqa: E402,F401
                                    marker_uri, read_output, remove_parts)
from pipelines.report import plot_file  # noqa: E402
from pipelines.scoring import SCORE_SCHEMA, Scorer, pool_steps_for, window_rows  # noqa: E402,F401
from pipelines.storage import S3Options  # noqa: E402
from pipelines.windows import STEP  # noqa: E402

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
    storage.remove_temp_files(out, s3)                   # what a crash left mid-write: never read
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
    remove_parts(out, s3)
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
