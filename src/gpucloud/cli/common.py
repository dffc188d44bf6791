"""What every command shares: the SDK client and the option types used across commands."""

from __future__ import annotations

from typing import Annotated

import typer

from gpucloud.client.client import Client

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only (for scripts).")]


def client() -> Client:
    """A client configured from GPUCLOUD_URL/GPUCLOUD_TOKEN or the saved login."""
    return Client()
