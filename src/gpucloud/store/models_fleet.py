"""Tables of the operator's asset register and bare-metal leases (issue 11)."""

from __future__ import annotations
