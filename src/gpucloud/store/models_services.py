"""Tables of inference services and their replicas (issue 10)."""

from __future__ import annotations
