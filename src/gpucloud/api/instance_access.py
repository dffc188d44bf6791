"""Who may reach inside an instance (its shell, its Jupyter), and where it runs now.

Both the API's bearer token and the web console's session cookie are accepted, so a browser
signed in to the console opens Jupyter without pasting a token. Another tenant's instance is
indistinguishable from none (404).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers

from gpucloud.api.deps import Platform, cached_principal, check_secret
from gpucloud.api.problems import problem, status_of
from gpucloud.core.errors import Conflict, GpucloudError, Unauthenticated
from gpucloud.core.instances import InstanceState
from gpucloud.core.tenancy import Principal, Role
from gpucloud.store import instances as store
from gpucloud.store.jobs import active_allocations


def caller(platform: Platform, headers: Headers, cookies: Mapping[str, str], address: str,
           session_policy: object | None = None) -> Principal:
    """The bearer token's owner, else the console session's; Unauthenticated otherwise. The
    check is the API's: the token cache, and the failed-check limit per client address."""
    scheme, _, secret = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        cached = cached_principal(platform, secret.strip(), address)
        return cached if cached is not None else check_secret(platform, secret.strip(), address)
    from gpucloud.console.auth import SESSION_COOKIE
    from gpucloud.console.sessions import SessionPolicy, SignInRequired, resolve

    cookie = cookies.get(SESSION_COOKIE)
    if cookie:
        rules = session_policy if isinstance(session_policy, SessionPolicy) else SessionPolicy()
        with platform.auth_failures.guard(address):
            try:
                with platform.ctx.db.read() as session:
                    return resolve(session, cookie, platform.ctx.clock.now(), rules).principal
            except SignInRequired as err:
                raise Unauthenticated(f"the console session is not valid ({err}); sign in "
                                      "again") from err
    raise Unauthenticated("missing API token: send 'Authorization: Bearer TOKEN' or sign in "
                          "to the console")


@dataclass(frozen=True)
class RunningInstance:
    id: str
    name: str
    job_id: str
    engine_ref: str
    run: int
    jupyter_token: str | None


def running(platform: Platform, who: Principal, ref: str) -> RunningInstance:
    """The instance, if the caller may use it and it is RUNNING with a launched job."""
    with platform.ctx.db.read() as session:
        instance = store.get_instance(session, who, ref)
        who.require(Role.MEMBER, "using an instance")
        state = InstanceState(instance.state)
        allocations = (active_allocations(session, instance.current_job_id)
                       if instance.current_job_id else [])
        if (state is not InstanceState.RUNNING or not allocations
                or allocations[0].engine_ref is None or instance.current_job_id is None):
            raise Conflict(f"instance {instance.name} is {state.value}, not RUNNING; "
                           f"'gpucloud instance start {instance.name}' first")
        return RunningInstance(instance.id, instance.name, instance.current_job_id,
                               allocations[0].engine_ref, instance.runs,
                               instance.jupyter_token)


def still_running(platform: Platform, target: RunningInstance) -> bool:
    """Whether the same run is still on: a stop or restart ends the shells opened into it."""
    from gpucloud.store.models_instances import Instance

    with platform.ctx.db.read() as session:
        instance = session.get(Instance, target.id)
        return (instance is not None and instance.state is InstanceState.RUNNING
                and instance.current_job_id == target.job_id)


def error_response(err: GpucloudError) -> tuple[int, object]:
    """The problem+json answer for a refused handshake or request."""
    status = status_of(err)
    return status, problem(status, err.code, str(err))
