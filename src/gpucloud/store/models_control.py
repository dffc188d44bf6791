"""Tables of the control plane's own coordination: leader leases (issue 12)."""

from __future__ import annotations
