"""Retrying transient storage errors: the one helper storage.py's read path goes through.

botocore and s3fs already retry a failed request a few times within one call (connection drops, 5xx,
throttling); `retrying` adds slower attempts over those, so that a store that is briefly away costs a
wait, not a file reported as bad. What retrying cannot cure (a missing file, a denied read) and every
other exception propagate at once.
"""

from __future__ import annotations

import time

# What a store says about a file that is not there or not ours to read: retrying cannot help.
PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient(e: BaseException) -> bool:
    """A storage failure that a retry may cure: connection drops, timeouts, throttling, 5xx (OSError or a
    botocore/aiohttp error from fsspec), not a missing file, a denied read or missing credentials."""
    if isinstance(e, PERMANENT):
        return False
    if isinstance(e, (OSError, TimeoutError)):          # ConnectionError is an OSError
        return True
    try:
        import botocore.exceptions as be
        if isinstance(e, be.BotoCoreError):
            return not isinstance(e, (be.NoCredentialsError, be.ParamValidationError))
    except ImportError:
        pass
    try:
        import aiohttp
        return isinstance(e, aiohttp.ClientError)
    except ImportError:
        return False


def retrying(fn, attempts: int = 4, base_delay: float = 0.5):
    """fn() with transient storage errors retried, waiting base_delay * 2**k between attempts (0.5, 1, 2 s:
    over what botocore and s3fs already retry within one call); the last failure, or any other
    exception, propagates unchanged."""
    for k in range(attempts):
        try:
            return fn()
        except Exception as e:
            if k == attempts - 1 or not is_transient(e):
                raise
            time.sleep(base_delay * 2 ** k)


class RetryingReader:
    """A file object whose reads retry transient errors from where they started. soundfile's read callback
    cannot raise (libsndfile would just see the file end early), so a read that still fails is kept in
    .error for the caller to raise."""

    def __init__(self, f):
        self.f, self.error = f, None

    def seek(self, pos, whence=0):
        return self.f.seek(pos, whence)

    def seekable(self):
        return True

    def readable(self):
        return True

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def raise_error(self):
        """Raise the read error kept from a caller that swallowed it (soundfile), if any."""
        if self.error is not None:
            raise self.error

    def tell(self):
        return self.f.tell()

    def read(self, n=-1):
        pos = self.f.tell()

        def once():
            self.f.seek(pos)
            return self.f.read(n)
        try:
            return retrying(once)
        except Exception as e:
            self.error = e
            raise
