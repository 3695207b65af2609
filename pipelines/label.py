"""label: bulk archive labeling (batch inference): audio of any length -> per-file labels and music/speech
segment timelines, on Ray Data.

    # a folder (or one file), locally
    python pipelines/label.py --input DIR --model model.pt --output OUT
    # a bucket, on a cluster (the checkpoint may be local to the driver or s3://)
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python pipelines/label.py --input s3://bucket/archive --model s3://bucket/model.pt --output s3://bucket/labels
    # more: --list uris.csv, --csv, --plot timeline.png [--plot-uri URI], --resume, --overwrite
    # from Python: the same run as a function (pipelines/api.py)
    label(LabelConfig(input="DIR", model="model.pt", output="OUT"))      # -> LabelResult

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
import io
import os
import sys
import time

if __package__ in (None, ""):  # `python pipelines/label.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from model.segments import SILENCE, segments, timeline  # noqa: E402,F401  (timeline, segments: part of the API)
from pipelines import console, exports, storage  # noqa: E402
from pipelines.errors import JobError, run_cli  # noqa: E402
from pipelines.label_config import LabelConfig, LabelResult, parse_uris  # noqa: E402
from pipelines.label_plan import Plan, files_to_do, plan  # noqa: E402
from pipelines.label_output import (SEGMENT_SCHEMA, PartWriter, assemble, collect, file_schema,  # noqa: E402,F401
                                    marker_uri, read_output, remove_parts)
from pipelines.report import plot_file  # noqa: E402
from pipelines.resources import alive_nodes, check_fit  # noqa: E402
from pipelines.scoring import SCORE_SCHEMA, Scorer, pool_steps_for, window_rows  # noqa: E402,F401
from pipelines.storage import S3Options  # noqa: E402
from pipelines.windows import STEP  # noqa: E402

# ------------------------------------------------------------------------------------------------
# the command line

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Label an audio archive music/speech with a trained checkpoint on Ray: per-file labels "
                    "and segment timelines as Parquet.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", help="audio file, folder or s3:// prefix (WAV/FLAC/OGG/MP3, searched recursively)")
    p.add_argument("--list", help="CSV/text file of audio URIs (first column; relative paths are relative to it) "
                                  "instead of --input")
    p.add_argument("--extensions", type=storage.parse_extensions, default=storage.EXTENSIONS_ARG,
                   help=storage.EXTENSIONS_HELP)
    p.add_argument("--model", required=True, help="checkpoint (model.pt from the train job), local path or s3://")
    p.add_argument("--ensemble", type=parse_uris, default=(), metavar="URI[,URI...]",
                   help="more checkpoints (same classes and features as --model) whose probabilities are averaged "
                        "with --model's: each adds as much network time as --model takes")
    p.add_argument("--output", required=True, help="output folder or s3:// prefix")
    p.add_argument("--window-seconds", type=float, help="analysis window (default: the checkpoint's window)")
    p.add_argument("--hop-seconds", type=float, help="hop between windows (default: the window, no overlap)")
    p.add_argument("--resolution-seconds", type=float, default=1.0,
                   help="length of the local stretches the feature map is pooled over, one score each "
                        "(rounded down to whole feature-map steps of 8 frames); 0: one score per window")
    p.add_argument("--min-segment-seconds", type=float, default=2.0,
                   help="segments shorter than this join their neighbour (flicker smoothing); 0: off")
    p.add_argument("--switch-cost", type=float, default=3.0,
                   help="smoothing: labels are the most likely sequence (Viterbi) where each second costs -log p(label) "
                        "and each change of label this many nats, so a lone second the network doubts takes the label "
                        "around it and a confident stretch stays; 0: each stretch's most probable label (before "
                        "--min-segment-seconds)")
    p.add_argument("--silence-db", type=float, default=-55.0,
                   help="`silence`: stretches whose RMS over 50 ms frames stays below this many dBFS (the "
                        "absolute level of the decoded audio, before the per-window normalization)")
    p.add_argument("--silence-min-seconds", type=float, default=1.0,
                   help="shortest quiet stretch labeled `silence` (shorter pauses keep the network's label); "
                        "0: no silence detection")
    p.add_argument("--band-limit-hz", type=float,
                   help="the network hears every file band-limited to this (decoded at twice it, resampled back), "
                        "so that full-band and telephone/AM-band recordings look alike to it; 0: off (default: the "
                        "checkpoint's features' own band limit, 0 unless featurize had --band-limit-hz)")
    p.add_argument("--class-prior", default="",
                   help="CLASS=WEIGHT,...: multiply the network's probability of a class by WEIGHT (and renormalize) "
                        "before segments and labels are decided, e.g. noise=0.5 where noise is rarer than in the "
                        "training data; classes not named keep 1")
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
    console.add_cluster_options(p)
    return p


def config_of(a: argparse.Namespace) -> LabelConfig:
    """The parsed options -> the run's LabelConfig (--csv is already in a.format)."""
    return LabelConfig(**{k: v for k, v in vars(a).items() if k != "csv"})


def parse_args(argv=None) -> argparse.Namespace:
    p = parser()
    a = p.parse_args(argv)
    try:
        a.format = exports.parse_formats(a.format + (",csv" if a.csv else ""))
    except ValueError as e:
        p.error(f"--format: {e}")
    a.csv = "csv" in a.format
    try:
        config_of(a)
    except ValueError as e:
        p.error(str(e))
    return a


# ------------------------------------------------------------------------------------------------
# the driver

def score(cfg: LabelConfig, p: Plan, todo: list[str], n_actors: int, device: str, writer: PartWriter,
          s3: S3Options) -> tuple[int, int, float]:
    """The Ray Data pipeline: files -> windows (tasks) -> the network (actors) -> the driver, which writes
    finished files into OUT/parts/. -> (files done, files with errors, seconds of audio)."""
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    progress = console.Progress("label", len(todo))
    ds = console.quiet(ray.data.from_items([{"uri": u} for u in todo], override_num_blocks=max(1, len(todo))),
                       cfg.verbose)
    # a few windows per block: hour-long files stream. On this dataset's own context (its successors
    # share it and the planner reads it from there), not the process-wide one
    ds.context.target_max_block_size = 4 * 1024 * 1024
    ds = ds.map_batches(window_rows, batch_size=1, batch_format="numpy", compute=TaskPoolStrategy(),
                        fn_kwargs={"cfg_dict": p.features.to_dict(), "hop_seconds": p.hop, "s3": s3,
                                   "silence": (cfg.silence_db, cfg.silence_min_seconds)},
                        num_cpus=cfg.decode_cpus)  # Ray Data SPREADs tasks by default
    ds = ds.map_batches(Scorer, batch_size=cfg.batch_size, batch_format="pyarrow",
                        fn_constructor_kwargs={"checkpoint": p.checkpoint, "ensemble": p.ensemble,
                                               "resolution_seconds": cfg.resolution_seconds,
                                               "threads": cfg.threads_per_actor, "device": device,
                                               "exact_plain": cfg.plain, "class_prior": dict(cfg.class_prior)},
                        compute=ActorPoolStrategy(size=n_actors), num_cpus=cfg.cpus_per_actor,
                        num_gpus=cfg.num_gpus_per_actor or None)
    done = collect(ds.iter_batches(batch_size=None, batch_format="pyarrow"), todo, writer, p.classes,
                   cfg.min_segment_seconds, progress, cfg.switch_cost)
    progress.close()
    return done


def write_outputs(cfg: LabelConfig, p: Plan, files: pa.Table, segs: pa.Table, s3: S3Options) -> str | None:
    """The final tables, CSV and the other --format exports, the plot; removes the parts. -> the plot's path."""
    out = cfg.output
    storage.write_table(storage.join(out, "files.parquet"), files, s3)
    storage.write_table(storage.join(out, "segments.parquet"), segs, s3)
    if cfg.csv:
        import pyarrow.csv as pacsv

        for name, t in (("files.csv", files), ("segments.csv", segs)):
            buf = io.BytesIO()
            pacsv.write_csv(t, buf)
            storage.write_bytes(storage.join(out, name), buf.getvalue(), s3)
    exports.write_exports(out, files, segs, list(cfg.format), s3)
    remove_parts(out, s3)                                # files first: see label_output.remove_parts
    if cfg.plot:
        puri = cfg.plot_uri or p.uris[0]
        plot_file(puri, segs.filter(pc.equal(segs.column("uri"), puri)), cfg.plot, p.features, s3)
        print(f"label: wrote the timeline plot of {puri} to {cfg.plot}", flush=True)
    return cfg.plot


def label(cfg: LabelConfig) -> LabelResult:
    """Label cfg.input (or the files of cfg.list) with the checkpoint cfg.model into cfg.output on Ray (the
    Ray of this process if one is up, else cfg.address, $RAY_ADDRESS or a new local one) and return what it
    wrote. Prints the job's progress lines; raises JobError for bad input and when no file could be labeled."""
    s3, out = S3Options.from_env(cfg.endpoint_url), cfg.output
    p = plan(cfg, s3)
    todo = files_to_do(cfg, p, s3)
    console.ensure_ray(cfg.address, cfg.verbose)
    import ray

    t0 = time.time()
    res = ray.cluster_resources()
    n_actors = cfg.actors or (max(1, int(res.get("GPU", 0) // cfg.num_gpus_per_actor)) if cfg.num_gpus_per_actor > 0
                              else max(1, int(res.get("CPU", 1) // 2)))
    check_fit(alive_nodes(), ("--decode-cpus", cfg.decode_cpus),
              ("--actors / --cpus-per-actor / --num-gpus-per-actor", n_actors, cfg.cpus_per_actor, cfg.num_gpus_per_actor))
    device = "cuda" if cfg.num_gpus_per_actor > 0 else "cpu"
    steps = pool_steps_for(cfg.resolution_seconds, p.features)
    res_s = "window" if steps is None else f"{steps * STEP * p.features.hop_length / p.features.sample_rate:.3f} s"
    print(f"label: {len(todo)} files -> {out} with {n_actors} network actor(s) on {device} (window "
          f"{p.features.window_seconds:g} s, hop {p.hop:g} s, resolution {res_s})", flush=True)
    writer = PartWriter(out, s3, p.classes)
    n_done, n_err, seconds = score(cfg, p, todo, n_actors, device, writer, s3) if todo else (0, 0, 0.0)
    writer.flush()
    wall = time.time() - t0

    files, segs = read_output(out, s3, p.classes)
    n_ok = int(pc.sum(pc.equal(files.column("status"), "ok")).as_py() or 0)
    if n_ok == 0:
        raise JobError(f"no file could be labeled ({files.num_rows} errors)", exit_code=1)
    plot = write_outputs(cfg, p, files, segs, s3)
    result = LabelResult(output=out, files_table=storage.join(out, "files.parquet"),
                         segments_table=storage.join(out, "segments.parquet"), marker=marker_uri(out), plot=plot,
                         files=n_done, errors=n_err, audio_seconds=seconds, wall_seconds=wall,
                         total_files=files.num_rows, total_labeled=n_ok, total_segments=segs.num_rows)
    summary = {"files": files.num_rows, "labeled": n_ok, "errors": files.num_rows - n_ok,
               "audio_hours": float(pc.sum(files.column("duration")).as_py() or 0.0) / 3600, "segments": segs.num_rows,
               "this_run": {"files": n_done, "errors": n_err, "audio_seconds": seconds, "wall_seconds": wall,
                            "realtime_factor": result.realtime_factor}, **p.settings}
    storage.write_json(marker_uri(out), summary, s3)
    return result


def main(argv=None) -> int:
    return run_cli("label", label, config_of(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
