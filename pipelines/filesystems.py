"""Filesystems: one fsspec layer so that local paths and s3:// URIs share code (pipelines/storage.py builds
on it and re-exports it). S3 settings come from the usual AWS environment variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION/AWS_DEFAULT_REGION, AWS_ENDPOINT_URL) or an explicit
endpoint_url, which jobs pass on to their Ray workers through `S3Options`."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

import fsspec
import pyarrow.fs as pafs


@dataclass(frozen=True)
class S3Options:
    """What a worker process needs to reach the same S3 store as the driver (plain data: picklable)."""
    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    token: str | None = None
    region: str | None = None

    def __repr__(self) -> str:
        # it travels in Ray task arguments and train_loop_config, which Ray may print or log: never show
        # the secret or the token, and only the last 4 characters of the key
        def mask(v, tail=0):
            return None if v is None else "***" + (v[-tail:] if tail and len(v) > 2 * tail else "")
        return (f"S3Options(endpoint_url={self.endpoint_url!r}, key={mask(self.key, 4)!r}, "
                f"secret={mask(self.secret)!r}, token={mask(self.token)!r}, region={self.region!r})")

    @classmethod
    def from_env(cls, endpoint_url: str | None = None) -> "S3Options":
        e = os.environ.get
        return cls(endpoint_url=endpoint_url or e("AWS_ENDPOINT_URL_S3") or e("AWS_ENDPOINT_URL"),
                   key=e("AWS_ACCESS_KEY_ID"), secret=e("AWS_SECRET_ACCESS_KEY"), token=e("AWS_SESSION_TOKEN"),
                   region=e("AWS_REGION") or e("AWS_DEFAULT_REGION"))


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def strip_scheme(uri: str) -> str:
    return uri[len("s3://"):] if is_s3(uri) else uri


def get_fs(uri: str, s3: S3Options | None = None) -> fsspec.AbstractFileSystem:
    if is_s3(uri):
        s3 = s3 or S3Options.from_env()
        client_kwargs = {}
        if s3.endpoint_url:
            client_kwargs["endpoint_url"] = s3.endpoint_url
        if s3.region:
            client_kwargs["region_name"] = s3.region
        # skip_instance_cache: settings may differ between calls in one process (tests, workers)
        return fsspec.filesystem("s3", key=s3.key, secret=s3.secret, token=s3.token,
                                 client_kwargs=client_kwargs, skip_instance_cache=True)
    return fsspec.filesystem("file")


def arrow_fs(uri: str, s3: S3Options | None = None) -> pafs.FileSystem:
    """A pyarrow filesystem for Ray's read_*/write_* (pyarrow's own S3FileSystem ignores
    AWS_ENDPOINT_URL, so wrap the same fsspec filesystem instead)."""
    if is_s3(uri):
        return pafs.PyFileSystem(pafs.FSSpecHandler(get_fs(uri, s3)))
    return pafs.LocalFileSystem()


def arrow_path(uri: str) -> str:
    """The path to hand to a filesystem from arrow_fs() (absolute for local paths)."""
    return strip_scheme(uri) if is_s3(uri) else os.path.abspath(uri)


def absolute(uri: str) -> str:
    """A local path made absolute (s3:// URIs as they are): what a Ray worker is handed. Ray Train runs each
    worker in a directory of its own, so a relative --output put model.pt and report/ under Ray's session
    folder (measured: /tmp/ray/session_*/artifacts/NAME/<output>/NAME/model.pt) instead of beside the checkpoints."""
    return uri if is_s3(uri) else os.path.abspath(uri)


def join(uri: str, *parts: str) -> str:
    if is_s3(uri):
        return "s3://" + posixpath.join(strip_scheme(uri).rstrip("/"), *parts)
    return os.path.join(uri, *parts)
