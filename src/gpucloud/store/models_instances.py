"""Tables of interactive GPU instances (issue 9)."""

from __future__ import annotations
