import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from gpucloud.store.sealed import KEY_ENV, PREFIX, SealedSecretUnreadable, Sealer, load_sealer


def test_a_sealed_secret_opens_with_its_key_only() -> None:
    sealer = Sealer.ephemeral()
    stored = sealer.seal("hunter2")
    assert stored.startswith(PREFIX) and "hunter2" not in stored
    assert sealer.unseal(stored) == "hunter2"
    assert sealer.seal("hunter2") != stored  # a fresh IV each time: equal secrets don't show
    with pytest.raises(SealedSecretUnreadable, match=KEY_ENV):
        Sealer.ephemeral().unseal(stored)
    with pytest.raises(SealedSecretUnreadable):
        sealer.unseal("hunter2")  # never taken as clear text
    with pytest.raises(SealedSecretUnreadable):
        sealer.unseal(stored[:-4] + "AAAA")  # tampered with


def test_the_key_file_is_made_once_private_and_reused(tmp_path: Path) -> None:
    first = load_sealer(tmp_path, environ={})
    key_file = tmp_path / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = first.seal("s3cret")
    assert load_sealer(tmp_path, environ={}).unseal(stored) == "s3cret"  # a restart reads it


def test_the_environment_key_wins_and_a_bad_one_says_what_to_do(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    stored = load_sealer(tmp_path, environ={KEY_ENV: key}).seal("x")
    assert Sealer(key.encode()).unseal(stored) == "x"
    assert not (tmp_path / "secret.key").exists()
    with pytest.raises(ValueError, match="url-safe base64"):
        load_sealer(tmp_path, environ={KEY_ENV: "too-short"})
