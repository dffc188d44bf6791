"""Identity and account commands: login, whoami, tenant, user and token."""

from __future__ import annotations

from typing import Annotated

import typer

from gpucloud.cli import render
from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.output import console, print_json
from gpucloud.client.client import Client
from gpucloud.client.config import save_profile
from gpucloud.core.quantities import parse_duration_s
from gpucloud.core.tenancy import Role
from gpucloud.schemas import WhoAmI

tenant_app = typer.Typer(help="Tenants (operators only).", no_args_is_help=True)
user_app = typer.Typer(help="Users of a tenant.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)


def _identity(who: WhoAmI) -> str:
    operator = ", operator" if who.is_operator else ""
    return (
        f"{who.user} ({who.user_id}) in tenant {who.tenant} ({who.tenant_id}), "
        f"role {who.role.value}{operator}"
    )


def _shown_once(secret: str) -> None:
    console.print(f"token: {secret}", markup=False)
    console.print(
        "This token is shown once: store it now (e.g. export GPUCLOUD_TOKEN=...).",
        style="yellow",
        markup=False,
    )


def login(
    url: Annotated[str, typer.Argument(help="The server, e.g. http://127.0.0.1:8470.")],
    token: Annotated[str | None, typer.Option(help="API token (prompted when left out).")] = None,
) -> None:
    """Check a URL and token, then save them as the default for later commands."""
    if token is None:
        token = typer.prompt("API token", hide_input=True)
    url = url.rstrip("/")
    with Client(url, token) as api:
        who = api.whoami()
    path = save_profile(url, token)
    console.print(f"logged in to {url} as {_identity(who)}", markup=False)
    console.print(f"saved to {path} (mode 0600)", style="dim", markup=False)


def whoami(as_json: JsonFlag = False) -> None:
    """Who the current token belongs to."""
    with client() as api:
        who = api.whoami()
        url = api.url
    if as_json:
        print_json(who)
        return
    console.print(f"{_identity(who)} at {url}", markup=False)


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant name.")], as_json: JsonFlag = False
) -> None:
    """Create a tenant; then add its first admin with 'gpucloud user create'."""
    with client() as api:
        tenant = api.create_tenant(name)
    if as_json:
        print_json(tenant)
        return
    console.print(f"tenant {tenant.name} created ({tenant.id})", markup=False)
    console.print(
        f"  add an admin: gpucloud user create NAME --tenant {tenant.name} --role admin",
        markup=False,
    )


@tenant_app.command("list")
def tenant_list(as_json: JsonFlag = False) -> None:
    """The tenants you can see."""
    with client() as api:
        tenants = api.list_tenants()
    if as_json:
        print_json(tenants)
        return
    console.print(render.tenants_table(tenants))


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="User name.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant name or id (default: yours).")] = None,
    role: Annotated[Role, typer.Option(help="What the user may do.")] = Role.MEMBER,
    as_json: JsonFlag = False,
) -> None:
    """Create a user and its first token (printed once)."""
    with client() as api:
        user = api.create_user(name, tenant=tenant, role=role.value)
    if as_json:
        print_json(user)
        return
    console.print(
        f"user {user.name} created ({user.id}) in tenant {user.tenant}, role {user.role.value}",
        markup=False,
    )
    _shown_once(user.token)


@user_app.command("list")
def user_list(as_json: JsonFlag = False) -> None:
    """The users you can see."""
    with client() as api:
        users = api.list_users()
    if as_json:
        print_json(users)
        return
    console.print(render.users_table(users))


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
    user: Annotated[str | None, typer.Option(help="User name or id (default: you).")] = None,
    expires_in: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d or 12h.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API token (printed once)."""
    expires_s = parse_duration_s(expires_in, "--expires-in") if expires_in is not None else None
    with client() as api:
        token = api.create_token(name=name, user=user, expires_in_s=expires_s)
    if as_json:
        print_json(token)
        return
    console.print(f"token {token.id} ({token.name}) created for {token.user_id}", markup=False)
    _shown_once(token.token)


@token_app.command("list")
def token_list(as_json: JsonFlag = False) -> None:
    """The tokens you can see (never their secrets)."""
    with client() as api:
        tokens = api.list_tokens()
    if as_json:
        print_json(tokens)
        return
    console.print(render.tokens_table(tokens))


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="Token id.")], as_json: JsonFlag = False
) -> None:
    """Revoke a token at once; requests with it fail from now on."""
    with client() as api:
        token = api.revoke_token(token_id)
    if as_json:
        print_json(token)
        return
    console.print(f"token {token.id} ({token.name}) revoked", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(whoami)
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
