"""The labeling job's output: each file's scored rows assembled into its file row and segments, checkpointed
into OUT/parts/ as files finish, and read back exactly once per file (what --resume and the final
consolidation read).

    OUT/parts/<run>/{segments,files}/NNNNN.parquet   finished files, segments first
    OUT/files.parquet, OUT/segments.parquet         the consolidated tables
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.segments import file_summary, segments, timeline, with_silence
from pipelines import storage
from pipelines.storage import S3Options


def file_schema(classes) -> pa.Schema:
    return pa.schema([("uri", pa.string()), ("duration", pa.float64()), ("label", pa.string()),
                      ("confidence", pa.float64()), *[(f"fraction_{c}", pa.float64()) for c in classes],
                      ("windows", pa.int32()), ("status", pa.string()), ("error", pa.string())])


SEGMENT_SCHEMA = pa.schema([("uri", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
                            ("label", pa.string()), ("probability", pa.float64())])


def assemble(rows: list[dict], classes, min_seconds: float, switch_cost: float = 0.0) -> tuple[dict, list[dict]]:
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
    segs = segments(edges, mean, min_seconds, keep=C, switch_cost=switch_cost)
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


def remove_parts(out: str, s3: S3Options | None = None) -> None:
    """Remove OUT/parts/ once its rows are in the final tables, every run's files parts first, oldest run
    first. A file's part row wins over its final-table row (read_output) and takes its segments from its
    own part, so a segments part must outlive its files part: a whole-folder removal went segments/ first
    here (os.scandir's order) and a crash in between left file rows whose segments were gone; a segments
    part without its files part counts not at all."""
    parts = storage.join(out, "parts")
    for run in _ls(parts, s3):
        storage.remove(storage.join(run, "files"), s3)
    storage.remove(parts, s3)


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


def collect(batches, todo: list[str], writer: PartWriter, classes, min_seconds: float, progress=None,
            switch_cost: float = 0.0):
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
            finish(*assemble(pending.pop(r["uri"]), classes, min_seconds, switch_cost))
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
