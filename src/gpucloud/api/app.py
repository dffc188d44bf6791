"""The FastAPI application: routers, error mapping, health, and the web console at ``/``."""

from __future__ import annotations

from fastapi import FastAPI

import gpucloud
from gpucloud import console
from gpucloud.api import jupyter_proxy, problems, terminal
from gpucloud.api.deps import Platform
from gpucloud.api.routes import accounts, billing, events, health, instances, jobs, limits, nodes
from gpucloud.api.routes import assets as asset_routes
from gpucloud.api.routes import baremetal as baremetal_routes
from gpucloud.api.routes import datasets as dataset_routes
from gpucloud.api.routes import images as image_routes
from gpucloud.api.routes import leader as leader_routes
from gpucloud.api.routes import metrics as metrics_routes
from gpucloud.api.routes import services as service_routes
from gpucloud.api.routes import volumes as volume_routes


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="gpucloud",
        version=gpucloud.__version__,
        description="A self-service, metered, self-healing GPU cloud. Authenticate with "
        "'Authorization: Bearer TOKEN'. Errors are application/problem+json (RFC 9457).",
    )
    app.state.platform = platform
    problems.install(app)
    for module in (jobs, nodes, accounts, events, billing, limits, health, metrics_routes,
                   instances, terminal, jupyter_proxy, asset_routes, leader_routes):
        app.include_router(module.router)
    app.include_router(image_routes.router)
    app.include_router(service_routes.router)  # and the /s/ endpoints (service_router)
    app.include_router(baremetal_routes.router)
    app.include_router(volume_routes.router)
    app.include_router(dataset_routes.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:  # no worker thread for a probe
        return {"status": "ok"}

    console.install(app)
    return app
