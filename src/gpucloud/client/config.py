"""Where the SDK and the CLI find the server and the token.

Resolution order, first match wins: explicit arguments, then ``GPUCLOUD_URL`` /
``GPUCLOUD_TOKEN``, then the profile saved by ``gpucloud login``, then the default local URL.
The profile holds a secret, so it is created with mode 0600 from the start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_config_dir

from gpucloud.settings import DEFAULT_PORT

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
URL_ENV = "GPUCLOUD_URL"
TOKEN_ENV = "GPUCLOUD_TOKEN"
CONFIG_ENV = "GPUCLOUD_CONFIG"


@dataclass(frozen=True)
class Profile:
    url: str | None = None
    token: str | None = None


def config_path() -> Path:
    """``$GPUCLOUD_CONFIG``, else ``config.json`` in the platform's user config directory."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    return Path(user_config_dir("gpucloud", appauthor=False)) / "config.json"


def load_profile(path: Path | None = None) -> Profile:
    """The saved profile; an empty one when there is none or it cannot be read as JSON."""
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return Profile()
    if not isinstance(data, dict):
        return Profile()
    url, token = data.get("url"), data.get("token")
    return Profile(
        url=url if isinstance(url, str) and url else None,
        token=token if isinstance(token, str) and token else None,
    )


def save_profile(url: str, token: str, path: Path | None = None) -> Path:
    """Write the profile with mode 0600 (never briefly readable by others); returns its path."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "token": token}, handle, indent=2)
        handle.write("\n")
    path.chmod(0o600)  # an existing file keeps its old mode through O_CREAT
    return path


def resolve(url: str | None = None, token: str | None = None) -> tuple[str, str | None]:
    """(url, token) by the documented order; the token may be None (the caller decides)."""
    profile: Profile | None = None

    def saved() -> Profile:
        nonlocal profile
        if profile is None:
            profile = load_profile()
        return profile

    resolved_url = url or os.environ.get(URL_ENV) or saved().url or DEFAULT_URL
    resolved_token = token or os.environ.get(TOKEN_ENV) or saved().token
    return resolved_url.rstrip("/"), resolved_token
