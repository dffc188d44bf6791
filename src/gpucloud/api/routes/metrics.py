"""/metrics: Prometheus' text format, for operators (a scrape job sends the operator token)."""

from __future__ import annotations

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.metrics.collector import FleetCollector

router = api_router(tags=["metrics"])


def _registry(request: Request, platform: PlatformDep) -> CollectorRegistry:
    """One registry per application: its counters' cursors live as long as the process."""
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry()
        import pynvml  # initialised on the first scrape that finds real GPUs, not before

        registry.register(FleetCollector(platform.ctx.db, pynvml))
        request.app.state.metrics_registry = registry
    return registry


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request, platform: PlatformDep, who: PrincipalDep) -> Response:
    """Per-GPU telemetry under dcgm-exporter's names and the platform's own metrics
    (operators; see docs/metrics.md)."""
    who.require_operator("reading /metrics")
    return Response(generate_latest(_registry(request, platform)),
                    media_type=CONTENT_TYPE_LATEST)
