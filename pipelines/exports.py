"""Export formats of the label job: one file's segments -> the text that Audacity, Praat, NIST/pyannote
tools, video players and scripts open. The writers are pure (segments in, str out); write_exports is the
one loop that writes them through storage (local or s3://).

Segments are (start, end, label, probability) tuples or segments.parquet rows ({uri, start, end, label,
probability}); times in seconds. Formats and where write_exports puts them under OUT:

    audacity  OUT/audacity/<name>.txt        label track, `start\\tend\\tlabel` (File > Import > Labels)
    textgrid  OUT/textgrid/<name>.TextGrid   Praat long text format, one IntervalTier "music-speech"
    srt       OUT/srt/<name>.srt             SubRip cues HH:MM:SS,mmm
    vtt       OUT/vtt/<name>.vtt             WebVTT cues HH:MM:SS.mmm
    rttm      OUT/segments.rttm              NIST RTTM, one SPEAKER line per segment, all files
    json      OUT/segments.json              {"files": [file rows], "segments": {uri: [segments]}}

<name> comes from export_name: the input's path below the run's common input folder, plus a hash of the
full URI, so that two inputs never share a name.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor

from pipelines import storage

FORMATS = ("parquet", "csv", "audacity", "textgrid", "rttm", "srt", "vtt", "json")
PER_FILE = {"audacity": "txt", "textgrid": "TextGrid", "srt": "srt", "vtt": "vtt"}   # format -> extension
PER_RUN = {"rttm": "segments.rttm", "json": "segments.json"}
OUTPUTS = (*PER_FILE, *PER_RUN.values())   # what a run may leave under OUT: --overwrite clears them
TIER = "music-speech"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def parse_formats(text: str) -> list[str]:
    """'audacity, srt' -> ['parquet', 'audacity', 'srt'] (parquet always: --resume reads it)."""
    asked = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in asked if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format(s) {', '.join(bad)}: choose from {','.join(FORMATS)}")
    return [f for f in FORMATS if f == "parquet" or f in asked]


# ------------------------------------------------------------------------------------------------
# names

def _key(uri: str) -> str:
    """A '/'-separated path that tells schemes apart: s3://b/k -> s3/b/k, /a/b -> file/a/b."""
    if storage.is_s3(uri):
        return "s3/" + storage.strip_scheme(uri).strip("/")
    return "file/" + posixpath.normpath(uri.replace("\\", "/")).lstrip("/")


def export_root(uris) -> str:
    """The deepest folder holding every input (in _key form): export names are relative to it."""
    dirs = [posixpath.dirname(_key(u)) for u in uris]
    return posixpath.commonpath(dirs) if dirs else ""


def export_name(uri: str, ext: str, root: str = "") -> str:
    """A relative file name for one input's export: its path below root (a folder of export_root; by
    default the scheme + full path), sanitized ('/' kept as folders, anything but [A-Za-z0-9._-] -> '_'),
    then '.' + the first 8 hex digits of sha1(uri) + '.' + ext. The hash makes names unique even where
    sanitizing or truncating made two paths alike."""
    key = _key(uri)
    rel = key[len(root):].lstrip("/") if root and (key + "/").startswith(root.rstrip("/") + "/") else key
    parts = [_UNSAFE.sub("_", p)[:120] for p in rel.split("/") if p]
    parts = [("_" + p) if p in (".", "..") else p for p in parts] or ["input"]
    digest = hashlib.sha1(uri.encode("utf-8")).hexdigest()[:8]
    parts[-1] = f"{parts[-1]}.{digest}" + (f".{ext}" if ext else "")
    return "/".join(parts)


# ------------------------------------------------------------------------------------------------
# writers (pure)

def _rows(segments) -> list[tuple[float, float, str, float | None]]:
    out = []
    for s in segments:
        if isinstance(s, dict):
            s = (s["start"], s["end"], s["label"], s.get("probability"))
        out.append((float(s[0]), float(s[1]), "" if s[2] is None else str(s[2]), None if len(s) < 4 else s[3]))
    return sorted(out, key=lambda r: r[0])


def _one_line(label: str) -> str:
    return " ".join(label.split())     # tabs and newlines would break every line-based format


def audacity(segments) -> str:
    """Audacity's label track: `start<TAB>end<TAB>label` per line, seconds with 6 decimals, as Audacity
    itself exports them."""
    return "".join(f"{a:.6f}\t{b:.6f}\t{_one_line(l)}\n" for a, b, l, _ in _rows(segments))


def _num(x: float) -> str:
    return repr(float(x)) if x != int(x) else str(int(x))


def _quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def textgrid(segments, duration: float, uri: str = "", tier: str = TIER) -> str:
    """Praat TextGrid, long text format: one IntervalTier covering 0..duration without gaps (Praat
    requires that); a gap between segments becomes an empty interval. Gaps and overlaps under 1 us
    (float rounding) are closed; a larger overlap is an error naming the file."""
    rows = _rows(segments)
    xmax = max([float(duration)] + [b for _, b, _, _ in rows])
    iv, t = [], 0.0
    for a, b, l, _ in rows:
        if a < t - 1e-6:
            raise ValueError(f"{uri}: segments overlap at {a:.6f} s (previous one ends at {t:.6f} s)")
        if a > t + 1e-6:
            iv.append((t, a, ""))
        else:
            a = t
        if b > a:
            iv.append((a, b, l))
            t = b
    if xmax > t + 1e-6 or not iv:
        iv.append((t, xmax, ""))
    else:
        iv[-1] = (iv[-1][0], xmax, iv[-1][2])
    head = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {_num(xmax)} ",
            "tiers? <exists> ", "size = 1 ", "item []: ", "    item [1]:", '        class = "IntervalTier" ',
            f"        name = {_quote(tier)} ", "        xmin = 0 ", f"        xmax = {_num(xmax)} ",
            f"        intervals: size = {len(iv)} "]
    body = []
    for i, (a, b, l) in enumerate(iv, 1):
        body += [f"        intervals [{i}]:", f"            xmin = {_num(a)} ", f"            xmax = {_num(b)} ",
                 f"            text = {_quote(l)} "]
    return "\n".join(head + body) + "\n"


def rttm(segments, file_id: str) -> str:
    """NIST RTTM: `SPEAKER <file-id> 1 <start> <duration> <NA> <NA> <label> <NA> <NA>` per segment (the
    label stands in the speaker-name field); no field may hold whitespace."""
    fid = "_".join(file_id.split()) or "file"
    return "".join(f"SPEAKER {fid} 1 {a:.6f} {b - a:.6f} <NA> <NA> {'_'.join(l.split()) or '<NA>'} <NA> <NA>\n"
                   for a, b, l, _ in _rows(segments))


def _clock(t: float, sep: str) -> str:
    ms = max(0, int(round(t * 1000)))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def srt(segments) -> str:
    """SubRip: numbered cues `HH:MM:SS,mmm --> HH:MM:SS,mmm`, the label as the cue's text."""
    return "".join(f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{_one_line(l)}\n\n"
                   for i, (a, b, l, _) in enumerate(_rows(segments), 1))


def _vtt_text(label: str) -> str:
    return _one_line(label).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(segments) -> str:
    """WebVTT: the `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm` with the label as text."""
    return "WEBVTT\n\n" + "".join(f"{_clock(a, '.')} --> {_clock(b, '.')}\n{_vtt_text(l)}\n\n"
                                  for a, b, l, _ in _rows(segments))


def _clean(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def to_json(file_rows, segments_by_uri) -> str:
    """The whole run: {"files": [file rows], "segments": {uri: [{start, end, label, probability}]}}."""
    segs = {u: [{"start": a, "end": b, "label": l, "probability": _clean(None if p is None else float(p))}
                for a, b, l, p in _rows(s)] for u, s in segments_by_uri.items()}
    files = [{k: _clean(v) for k, v in r.items()} for r in file_rows]
    return json.dumps({"files": files, "segments": segs}, indent=1, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------------------------
# the loop

def write_exports(out: str, files_table, segments_table, formats, s3=None, threads: int = 16) -> list[str]:
    """Write the asked export formats of a run's final tables under out; returns the URIs written. Each
    asked per-file format's folder is cleared first, so it holds exactly this run's files (a --resume
    rewrites all of them from the full tables). parquet and csv are the job's own tables: skipped here."""
    formats = [f for f in formats if f in PER_FILE or f in PER_RUN]
    if not formats:
        return []
    files = files_table.to_pylist()
    by_uri: dict[str, list] = {r["uri"]: [] for r in files if r["status"] == "ok"}
    for r in segments_table.to_pylist():
        if r["uri"] in by_uri:
            by_uri[r["uri"]].append(r)
    duration = {r["uri"]: r["duration"] for r in files}
    root = export_root([r["uri"] for r in files])
    jobs = []
    for fmt in formats:
        if fmt in PER_FILE:
            storage.remove(storage.join(out, fmt), s3)
            for uri, segs in by_uri.items():
                text = (textgrid(segs, duration[uri], uri) if fmt == "textgrid" else
                        {"audacity": audacity, "srt": srt, "vtt": vtt}[fmt](segs))
                jobs.append((storage.join(out, fmt, *export_name(uri, PER_FILE[fmt], root).split("/")), text))
        elif fmt == "rttm":
            text = "".join(rttm(s, export_name(u, "", root)) for u, s in by_uri.items())
            jobs.append((storage.join(out, PER_RUN[fmt]), text))
        else:
            jobs.append((storage.join(out, PER_RUN[fmt]), to_json(files, by_uri)))
    # one object per input and format: on S3 each is a round trip, so several go at once
    with ThreadPoolExecutor(max(1, min(threads, len(jobs)))) as pool:
        list(pool.map(lambda j: storage.write_bytes(j[0], j[1].encode("utf-8"), s3), jobs))
    return [u for u, _ in jobs]
