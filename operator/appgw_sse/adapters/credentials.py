"""Credentials for ARM: azure-identity in Azure, a bearer token file for emulators."""

import time
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken

# Tokens from the file are re-read when it changes; a long lifetime keeps the SDK from asking
# for one on every request.
_TOKEN_LIFETIME_SECONDS = 3600


class TokenFileCredential:
    """An async credential whose bearer token is the content of a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: tuple[float, str] | None = None

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        mtime = self.path.stat().st_mtime
        if self._cached is None or self._cached[0] != mtime:
            self._cached = (mtime, self.path.read_text(encoding="utf-8").strip())
        # Expiry just ahead keeps azure-core asking again soon, so a rotated file is picked up.
        return AccessToken(self._cached[1], int(time.time()) + _TOKEN_LIFETIME_SECONDS)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> "TokenFileCredential":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
