"""Prometheus metrics: per-GPU telemetry under dcgm-exporter's names, and platform metrics
from the database (``collector``), exposed at ``/metrics`` (``api.routes.metrics``)."""
