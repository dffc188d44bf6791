"""Secrets the platform must read back (a BMC's password), sealed at rest.

Tokens are only ever compared, so they are stored hashed; a BMC login has to be sent to the BMC,
so it is encrypted instead (Fernet: AES-128-CBC with an HMAC-SHA256, from ``cryptography``). The
key is not in the database: it comes from ``GPUCLOUD_SECRET_KEY`` or, by default, the file
``secret.key`` in the data directory (mode 0600, created on first start). Every control-plane
replica of one database needs the same key; a database copied without it keeps its BMC logins
unreadable, which is the point.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from gpucloud.core.errors import GpucloudError

KEY_ENV = "GPUCLOUD_SECRET_KEY"
KEY_FILE = "secret.key"
PREFIX = "sealed:v1:"  # versioned, so that a later scheme can tell its own rows


class SealedSecretUnreadable(GpucloudError):
    """A sealed value does not open with this replica's key (another key, or tampered with)."""

    def __init__(self) -> None:
        super().__init__(
            f"a stored secret cannot be decrypted with this control plane's key: start every "
            f"replica with the same {KEY_ENV} (or {KEY_FILE} in its data directory)"
        )


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def ephemeral(cls) -> Sealer:
        """A fresh key that lives as long as the process: for tests and throwaway contexts."""
        return cls(Fernet.generate_key())

    def seal(self, plain: str) -> str:
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def unseal(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            raise SealedSecretUnreadable()
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken as err:
            raise SealedSecretUnreadable() from err


def load_sealer(data_dir: Path, environ: Mapping[str, str] = os.environ) -> Sealer:
    """The key from the environment, else the data directory's key file (made if missing)."""
    from_env = environ.get(KEY_ENV)
    if from_env:
        try:
            return Sealer(from_env.strip().encode())
        except ValueError as err:
            raise ValueError(
                f"{KEY_ENV} must be 32 url-safe base64-encoded bytes, as printed by "
                "python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from err
    path = data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two replicas starting at once on one data dir agree on one key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
    return Sealer(path.read_bytes().strip())
