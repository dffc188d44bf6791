"""Rich renderings of API objects: job tables and details, event timelines, nodes, accounts."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.table import Table
from rich.text import Text

from gpucloud.cli.output import age, aware, console, cpus, duration, mib, state_text, timestamp
from gpucloud.schemas import (
    Amount,
    DeviceOut,
    EventOut,
    JobOut,
    NodeOut,
    TenantOut,
    TokenOut,
    UserOut,
    WalletOut,
)


def placement(job: JobOut) -> str:
    """'local-0 gpu0,gpu1' from the node and device ids ('local-0/gpu0'), one such group per
    node of a multi-node job; '-' when unplaced."""
    nodes = job.node_ids or ([job.node_id] if job.node_id else [])
    if not nodes:
        return "-"
    parts = []
    for node in nodes:
        devices = [d.rsplit("/", 1)[-1] for d in job.devices if d.rsplit("/", 1)[0] == node]
        parts.append(f"{node} {','.join(devices)}" if devices else node)
    return "; ".join(parts)


def gpus(job: JobOut) -> str:
    """'4xH100', or '2 nodes x 8xH100' for a multi-node job."""
    per_node = "0" if not job.gpus else (
        f"{job.gpus}x{job.gpu_type}" if job.gpu_type else str(job.gpus)
    )
    return f"{job.nodes} nodes x {per_node}" if job.nodes > 1 else per_node


def jobs_table(jobs: Sequence[JobOut]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "NAME", "STATE", "REASON", "GPUS", "NODE", "AGE"):
        table.add_column(column, no_wrap=column in ("ID", "STATE", "AGE"))
    now = datetime.now(UTC)
    for job in jobs:
        table.add_row(
            job.id,
            job.name or "-",
            state_text(job.state),
            job.reason,
            gpus(job),
            placement(job),
            age(job.created_at, now),
        )
    return table


def print_jobs(jobs: Sequence[JobOut], empty_hint: str) -> None:
    if not jobs:
        console.print(empty_hint, style="dim")
        return
    console.print(jobs_table(jobs))


def _field(label: str, value: str | Text) -> Text:
    line = Text(f"{label:<10}", style="bold")
    line.append(value if isinstance(value, Text) else Text(value))
    return line


def job_summary(job: JobOut) -> list[Text]:
    """The lines that say where a job is and why."""
    lines = [
        _field("job", Text(job.id) + Text(f"  ({job.name})" if job.name else "")),
        _field("state", state_text(job.state) + Text(f"  {job.reason}", style="dim")),
    ]
    if job.message:
        lines.append(_field("message", job.message))
    return lines


def print_job(job: JobOut, events: Sequence[EventOut]) -> None:
    """Everything about one job, then its event timeline."""
    for line in job_summary(job):
        console.print(line)
    memory = mib(job.memory_mib)
    each = f"{job.gpus}x{job.gpu_type}" if job.gpu_type and job.gpus else str(job.gpus)
    resources = f"{each} GPU, {cpus(job.cpus)} CPU, {memory} memory"
    if job.nodes > 1:
        resources = f"{job.nodes} nodes, each with {resources}"
    resources += f", priority {job.priority}"
    console.print(_field("resources", resources))
    if job.max_duration_s:
        console.print(_field("max time", duration(job.max_duration_s)))
    console.print(_field("command", shlex.join(job.command)))
    if job.image:
        console.print(_field("image", job.image))
    if job.env:
        console.print(_field("env", " ".join(f"{k}={v}" for k, v in sorted(job.env.items()))))
    console.print(_field("placement", placement(job)))
    exit_code = "-" if job.exit_code is None else str(job.exit_code)
    console.print(_field("exit code", exit_code))
    if job.restart_count:
        console.print(_field("restarts", str(job.restart_count)))
    console.print(_field("created", timestamp(job.created_at)))
    console.print(_field("started", timestamp(job.started_at)))
    console.print(_field("ended", timestamp(job.ended_at)))
    if job.started_at:
        end = aware(job.ended_at) if job.ended_at else datetime.now(UTC)
        ran = (end - aware(job.started_at)).total_seconds()
        console.print(_field("ran for", duration(ran)))
    console.print()
    console.print(Text("events", style="bold"))
    console.print(events_table(events))


def events_table(events: Sequence[EventOut]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TIME", "CHANGE", "REASON", "MESSAGE"):
        table.add_column(column, no_wrap=column != "MESSAGE")
    for event in events:
        if event.before or event.after:
            change = state_text(event.before or "-") + Text(" -> ") + state_text(event.after or "-")
        else:
            change = Text(event.kind)
        table.add_row(timestamp(event.at), change, event.reason, event.message)
    return table


def _allocation(device: DeviceOut) -> Text:
    if device.allocation is None:
        return Text("free", style="green")
    if device.allocation.job_id:
        return Text(device.allocation.job_id, style="cyan")
    return Text("in use", style="yellow")  # held by another tenant


def _health(value: str) -> Text:
    return Text(value, style="green" if value == "healthy" else "bold red")


def _device_health(device: DeviceOut) -> Text:
    if device.retired:
        return Text("retired", style="bold red")
    if device.quarantined:
        return Text("quarantined", style="yellow")
    return _health(device.health)


def print_nodes(nodes: Sequence[NodeOut]) -> None:
    """One block per node: its health, CPU and memory use, then each device."""
    if not nodes:
        console.print("no nodes registered yet", style="dim")
    for number, node in enumerate(nodes):
        if number:
            console.print()
        title = Text(node.id, style="bold") + Text(f"  {node.engine}  ") + _health(node.health)
        if node.simulated:
            title.append("  SIMULATED", style="bold magenta")
        if node.quarantined:
            title.append("  QUARANTINED", style="bold yellow")
        console.print(title)
        if node.health_message:
            console.print(Text(f"  {node.health_message}", style="dim"))
        if node.quarantined:
            by = f" (by the {node.quarantined_by})" if node.quarantined_by else ""
            console.print(Text(f"  quarantined{by}: {node.quarantine_reason}", style="yellow"))
        console.print(
            f"  cpus {cpus(node.cpus_allocated)}/{cpus(node.cpus)} allocated, "
            f"memory {mib(node.memory_mib_allocated)}/{mib(node.memory_mib)} allocated"
        )
        if not node.devices:
            console.print("  no GPUs", style="dim")
            continue
        table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 1))
        for column in ("", "GPU", "MODEL", "MEMORY", "UUID", "HEALTH", "ALLOCATION"):
            table.add_column(column, no_wrap=True)
        for device in node.devices:
            model = Text(device.model)
            if device.simulated:
                model.append(" (simulated)", style="magenta")
            table.add_row(
                "",
                str(device.index),
                model,
                mib(device.memory_mib),
                device.uuid,
                _device_health(device),
                _allocation(device),
            )
        console.print(table)
        if node.faults:
            console.print("  recent faults:", style="bold")
            for fault in node.faults[:5]:
                gpu = "" if fault.device_index is None else f" GPU {fault.device_index}"
                console.print(Text(f"    {age(fault.at)} ago{gpu}: {fault.description} -> "
                                   f"{fault.action}", style="dim"))


def tenants_table(tenants: Sequence[TenantOut]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "NAME", "OPERATOR", "AGE"):
        table.add_column(column, no_wrap=True)
    for tenant in tenants:
        operator = "yes" if tenant.is_operator else ""
        table.add_row(tenant.id, tenant.name, operator, age(tenant.created_at))
    return table


def users_table(users: Sequence[UserOut]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "NAME", "TENANT", "ROLE", "AGE"):
        table.add_column(column, no_wrap=True)
    for user in users:
        table.add_row(user.id, user.name, user.tenant, user.role.value, age(user.created_at))
    return table


def token_status(token: TokenOut) -> Text:
    now = datetime.now(UTC)
    if token.revoked_at is not None:
        return Text("revoked", style="red")
    if token.expires_at is not None:
        expires = aware(token.expires_at)
        if expires <= now:
            return Text("expired", style="red")
        return Text(f"expires in {duration((expires - now).total_seconds())}")
    return Text("active", style="green")


def tokens_table(tokens: Sequence[TokenOut]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "NAME", "USER", "STATUS", "AGE"):
        table.add_column(column, no_wrap=True)
    for token in tokens:
        table.add_row(
            token.id, token.name, token.user_id, token_status(token), age(token.created_at)
        )
    return table


def money(value: Amount) -> str:
    """Exact, with its currency and without grouping: '3600.00 CNY'."""
    return f"{value.amount} {value.currency}"


def time_left(seconds: float | None) -> str:
    """How long a wallet lasts: '2h 13m', '5m 3s', '0s'; 'not burning' when nothing runs."""
    if seconds is None:
        return "not burning"
    rest = max(int(seconds), 0)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        parts.append((count, unit))
    first = next((i for i, (count, _) in enumerate(parts) if count), len(parts) - 1)
    shown = [f"{count}{unit}" for count, unit in parts[first : first + 2] if count]
    return " ".join(shown) or "0s"


def print_wallet(wallet: WalletOut) -> None:
    """Balance, burn rate, time left at that rate and prepaid card-hours."""

    def line(label: str, value: str) -> None:
        console.print(Text(f"{label:<11}", style="bold") + Text(value))

    line("tenant", wallet.tenant_id)
    line("balance", f"{wallet.balance} {wallet.currency}")
    running = wallet.running_allocations
    burning = f"{wallet.burn_rate_per_hour} {wallet.currency} per hour"
    if running:
        burning += f" ({running} running allocation{'s' if running != 1 else ''})"
    line("burn rate", burning)
    line("time left", time_left(wallet.seconds_left))
    packages = [
        f"{model} {hours} card-hours" for model, hours in sorted(wallet.package_card_hours.items())
    ]
    line("packages", ", ".join(packages) if packages else "none")
