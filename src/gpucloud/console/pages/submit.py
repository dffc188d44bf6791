"""The submit form: resources, command, environment, nodes; the price per hour (the API's
estimate) shown before submitting, and updated as the form changes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from gpucloud.api.deps import Platform, PlatformDep
from gpucloud.api.problems import status_of
from gpucloud.api.routes import billing as billing_api
from gpucloud.api.routes import jobs as jobs_api
from gpucloud.api.routes import nodes as nodes_api
from gpucloud.console import forms, render
from gpucloud.console.auth import Caller
from gpucloud.console.routing import console_router
from gpucloud.core.errors import GpucloudError, InvalidRequest
from gpucloud.core.tenancy import Principal

router = console_router()
KEY_FIELD = "idempotency_key"  # sent as the API's Idempotency-Key: a double submit is one job


def _models(platform: Platform, who: Principal) -> list[str]:
    """The GPU models this fleet has: the choices of the model field."""
    nodes = nodes_api.list_nodes(platform, who, 500, None).items
    return sorted({d.model for n in nodes for d in n.devices})


def _page(
    request: Request, platform: Platform, who: Principal, form: forms.SubmitForm,
    key: str, status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "form": form,
        "values": form.values,
        "models": _models(platform, who),
        "estimate": billing_api.estimate(form.spec, platform, who) if form.spec else None,
        "key": key,
    }
    parts = {"estimate": "parts/estimate.html"}
    return render.page(request, "submit.html", context, parts, status=status)


def _priced(values: dict[str, str]) -> forms.SubmitForm:
    """The form as typed so far, priced even before a command is entered."""
    parsed = forms.parse({**values, "command": values["command"] or "true"})
    return forms.SubmitForm(values, parsed.spec, parsed.error, parsed.error_field)


def _key(form: Mapping[str, Any]) -> str:
    key = form.get(KEY_FIELD)
    return key if isinstance(key, str) and key else str(uuid.uuid4())


@router.get("/jobs/new")
def submit_form(request: Request, platform: PlatformDep, who: Caller) -> Response:
    shown = _priced(forms.values_of(request.query_params))
    return _page(request, platform, who, forms.SubmitForm(shown.values, shown.spec), _key({}))


@router.post("/jobs/new/estimate")
async def estimate(request: Request, platform: PlatformDep, who: Caller) -> Response:
    form = dict(await request.form())
    shown = _priced(forms.values_of(form))
    return await run_in_threadpool(_page, request, platform, who, shown, _key(form))


@router.post("/jobs/new")
async def submit(request: Request, platform: PlatformDep, who: Caller) -> Response:
    form = dict(await request.form())
    return await run_in_threadpool(_submit, request, platform, who, form)


def _submit(
    request: Request, platform: Platform, who: Principal, form: dict[str, Any]
) -> Response:
    parsed = forms.parse(form)
    key = _key(form)
    if parsed.spec is None:
        return _page(request, platform, who, parsed, key, 422)
    try:
        created = jobs_api.submit_job(parsed.spec, platform, who, key)
    except GpucloudError as err:
        field = err.field if isinstance(err, InvalidRequest) and err.field else ""
        failed = forms.SubmitForm(parsed.values, parsed.spec, str(err), field)
        return _page(request, platform, who, failed, key, status_of(err))
    job_id = json.loads(bytes(created.body))["id"]
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
