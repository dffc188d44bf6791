"""Operator commands: admin topup, credit, ledger verify, config set/get/list, limit set/remove."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.errors import USAGE, CliError
from gpucloud.cli.limits import limit_app
from gpucloud.cli.output import console, print_json
from gpucloud.client.client import ApiError
from gpucloud.schemas import SettingOut

admin_app = typer.Typer(
    help="Operator tasks: money, the ledger, settings, quotas and budgets.", no_args_is_help=True
)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
config_app = typer.Typer(help="Operator settings (e.g. billing.*).", no_args_is_help=True)

RefOption = Annotated[
    str | None,
    typer.Option(help="A reference (e.g. the payment's); the same ref twice counts once."),
]


@admin_app.command("topup")
def topup(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    amount: Annotated[str, typer.Argument(help="Amount in the billing currency, e.g. 100.00.")],
    ref: RefOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Add money to a tenant's wallet."""
    with client() as api:
        held = api.topup(tenant, amount, ref)
    if as_json:
        print_json(held)
        return
    via = f" (ref {ref})" if ref else ""
    console.print(
        f"top-up of {amount} {held.currency} for {tenant}{via}: "
        f"balance {held.balance} {held.currency}",
        markup=False,
    )


@admin_app.command("credit")
def credit(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    amount: Annotated[str, typer.Argument(help="Amount in the billing currency, e.g. 5.00.")],
    reason: Annotated[str, typer.Option(help="Why: recorded on the ledger transaction.")],
    ref: RefOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Credit or refund a tenant's wallet, with a reason."""
    with client() as api:
        held = api.credit(tenant, amount, reason, ref)
    if as_json:
        print_json(held)
        return
    console.print(
        f"credit of {amount} {held.currency} for {tenant} ({reason}): "
        f"balance {held.balance} {held.currency}",
        markup=False,
    )


@ledger_app.command("verify")
def ledger_verify(as_json: JsonFlag = False) -> None:
    """Check every ledger invariant; exit 1 naming each violation."""
    with client() as api:
        report = api.verify_ledger()
    if as_json:
        print_json(report)
        if not report.ok:
            raise typer.Exit(1)
        return
    if report.ok:
        console.print(
            f"ledger ok: {report.transactions} transactions, {report.accounts} accounts",
            markup=False,
        )
        return
    for violation in report.violations:
        console.print(violation, markup=False)
    count = len(report.violations)
    raise CliError(
        f"ledger has {count} violation{'s' if count != 1 else ''} "
        f"({report.transactions} transactions, {report.accounts} accounts)"
    )


def _setting_line(setting: SettingOut) -> Text:
    return Text(f"{setting.key} = {setting.value}") + Text(f"  # {setting.help}", style="dim")


@config_app.command("set")
def config_set(
    key: Annotated[str, typer.Argument(help="Setting, e.g. billing.admission_runway_seconds.")],
    value: Annotated[str, typer.Argument(help="New value.")],
    as_json: JsonFlag = False,
) -> None:
    """Change an operator setting (checked by the server)."""
    with client() as api:
        setting = api.set_config(key, value)
    if as_json:
        print_json(setting)
        return
    console.print(f"{setting.key} = {setting.value}", markup=False)


@config_app.command("get")
def config_get(
    key: Annotated[str, typer.Argument(help="Setting, e.g. billing.admission_runway_seconds.")],
    as_json: JsonFlag = False,
) -> None:
    """One operator setting's value."""
    with client() as api:
        try:
            setting = api.get_config(key)
        except ApiError as err:
            if err.status != 404:
                raise
            known = ", ".join(sorted(s.key for s in api.config()))
            raise CliError(f"unknown setting {key!r}; known: {known}", USAGE) from err
    if as_json:
        print_json(setting)
        return
    console.print(_setting_line(setting))


@config_app.command("list")
def config_list(as_json: JsonFlag = False) -> None:
    """Every operator setting with its value."""
    with client() as api:
        settings = api.config()
    if as_json:
        print_json(settings)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("KEY", "VALUE", "HELP"):
        table.add_column(column, no_wrap=column != "HELP")
    for setting in settings:
        table.add_row(setting.key, setting.value, Text(setting.help, style="dim"))
    console.print(table)


admin_app.add_typer(ledger_app, name="ledger")
admin_app.add_typer(config_app, name="config")
admin_app.add_typer(limit_app, name="limit")


def register(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")
