"""``gpucloud admin leader``: which control-plane replica runs the controllers (docs/ha.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.output import console, print_json


def leader(as_json: JsonFlag = False) -> None:
    """Show the leader lease: its holder, fencing token and expiry, and whether the replica
    that answered (GPUCLOUD_URL) leads."""
    with client() as api:
        lease = api.leader()
    if as_json:
        print_json(lease)
        return
    if lease.holder is None or lease.expires_at is None:
        console.print(f"no leader (token {lease.token}): the lease is free", markup=False)
    else:
        left = (lease.expires_at - datetime.now(UTC)).total_seconds()
        console.print(f"leader {lease.holder}  token {lease.token}  "
                      f"lease expires in {left:.1f} s", markup=False)
    role = "leads" if lease.replica_leads else "follows"
    console.print(f"this replica {lease.replica or '-'} {role}", markup=False)


def register(admin_app: typer.Typer) -> None:
    admin_app.command("leader")(leader)
