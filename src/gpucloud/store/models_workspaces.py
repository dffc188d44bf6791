"""Tables of volumes, datasets and the nodes' dataset caches (issue 9)."""

from __future__ import annotations
