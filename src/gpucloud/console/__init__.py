"""The web console, served by the control plane at ``/``: server-rendered pages (Jinja2) with
a little JavaScript of our own for live updates. Pages call the API's own route functions
in-process, so tenancy, validation and errors are the API's. See docs/console.md."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from gpucloud.console.pages import (
    dashboard,
    fleet_assets,
    jobs,
    operator,
    signin,
    submit,
    tokens,
    wallet,
)
from gpucloud.console.render import HERE
from gpucloud.console.sessions import SessionPolicy

# submit before jobs: /jobs/new is a page of its own, not the job 'new'
PAGES = (signin, dashboard, submit, jobs, wallet, tokens, operator, fleet_assets)


def install(app: FastAPI, sessions: SessionPolicy | None = None) -> None:
    """Add the console's pages and static files to the API's app."""
    app.state.console_sessions = sessions or SessionPolicy()
    for module in PAGES:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="console-static")
