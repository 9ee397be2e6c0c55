"""Credentials for ARM: azure-identity in Azure, a bearer token file for emulators."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError  # azure-identity's error's base

# A file rewritten within the filesystem's timestamp granularity of our last read can keep its
# mtime and size; until its mtime is older than our read by this much, it is read again (git's
# "racily clean" rule). Two seconds covers the coarsest common filesystems.
_TIMESTAMP_GRANULARITY_NS = 2_000_000_000


@dataclass(frozen=True)
class _Read:
    identity: tuple[int, int, int]  # inode, size, mtime: a rotation (even a symlink swap) moves one
    token: str
    at_ns: int


class TokenFileCredential:
    """An async credential whose bearer token is the content of a file, re-read when it changes.

    azure-core's bearer token policy keeps a token until shortly before the expiry the credential
    claims. Tokens from here claim to expire at once, so the policy asks before every request;
    answering costs one stat() while the file is unchanged.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: _Read | None = None

    def _token(self) -> str:
        try:
            stat = self.path.stat()
            identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            last = self._last
            if (
                last is None
                or last.identity != identity
                or stat.st_mtime_ns > last.at_ns - _TIMESTAMP_GRANULARITY_NS
            ):
                last = self._last = _Read(
                    identity, self.path.read_text(encoding="utf-8").strip(), time.time_ns()
                )
        except OSError as exc:
            # Not azure-identity's CredentialUnavailableError, a subclass: importing
            # azure-identity costs 9 MiB, and with a token file nothing else needs it.
            raise ClientAuthenticationError(
                f"token file {self.path}: {exc.strerror or exc}"
            ) from None
        if not last.token:
            raise ClientAuthenticationError(f"token file {self.path} is empty")
        return last.token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token(), int(time.time()))

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> "TokenFileCredential":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
