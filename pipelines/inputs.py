"""What a job is given to read: several folders / s3:// prefixes and manifests at once, merged into one
list of items {uri, label, split, source}.

`source` is the group that validation holds out whole (one speaker, composer or recording chain): a
manifest's `source` column where it has one, else the name of the folder or manifest the file came
from. Labels and splits come from the manifest or from the path (.../<split>/<label>/file).
"""

from __future__ import annotations

import os
import posixpath

from pipelines import storage
from pipelines.storage import S3Options


def default_source(uri: str) -> str:
    """The folder's or manifest's own name: `../data/music_speech` -> `music_speech`."""
    name = posixpath.basename(storage.strip_scheme(uri).rstrip("/").replace("\\", "/")) or "input"
    return os.path.splitext(name)[0] if name.lower().endswith(".csv") else name


def list_items(inputs: list[str], manifests: list[str], s3: S3Options | None = None,
               extensions=None) -> list[dict]:
    """All files of all inputs, in the order given; a file listed twice keeps its first entry."""
    items, seen = [], set()

    def add(item):
        if item["uri"] not in seen:
            seen.add(item["uri"])
            items.append(item)

    for m in manifests:
        for r in storage.read_manifest(m, s3):
            add({**r, "source": r.get("source") or default_source(m)})
    for inp in inputs:
        src = default_source(inp)
        for uri in storage.list_audio(inp, s3, extensions):
            label, split = storage.label_and_split(uri)
            add({"uri": uri, "label": label, "split": split, "source": src})
    return items


def mixing_banks(items: list[dict], montage: bool = False) -> dict:
    """Files augmentation may mix in, never from the test split: noise (for 'noise'), music (for speech
    'over' music), and with `montage` under "montage" every labeled file by "label/source" (its pieces)."""
    out: dict = {"noise": [], "music": []}
    by_source: dict = {}
    for it in items:
        if it.get("label") is None or it.get("split") == "test":
            continue
        if it["label"] in out:
            out[it["label"]].append(it["uri"])
        if montage:
            by_source.setdefault(f"{it['label']}/{it.get('source')}", []).append(it["uri"])
    return {**{k: sorted(v) for k, v in out.items()}, "montage": {k: sorted(v) for k, v in by_source.items()}}
