"""Tables of the image catalogue and tenants' private images (issue 9)."""

from __future__ import annotations
