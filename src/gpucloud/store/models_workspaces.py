"""Tables of instances, volumes, datasets and images (issue 9)."""

from __future__ import annotations
