"""Tenant GPU quotas with borrowing of idle quota.

Each tenant is guaranteed its quota (milli-GPU; a tenant not listed has none). A tenant may go
over its quota by borrowing quota other tenants leave idle: the sum borrowed never exceeds the sum
idle, which is the same as total usage never exceeding total quota. Borrowed room is lent, not
given: an owner who needs it back reclaims it by preemption (see ``preemption.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class QuotaLedger:
    quota: Mapping[str, int]  # tenant -> guaranteed milli-GPU
    used: dict[str, int] = field(default_factory=dict)  # tenant -> milli-GPU in use
    borrowing: bool = True

    def of(self, tenant: str) -> int:
        return self.quota.get(tenant, 0)

    def usage(self, tenant: str) -> int:
        return self.used.get(tenant, 0)

    def within(self, tenant: str, milli: int) -> bool:
        """Would ``milli`` more keep the tenant inside its own quota?"""
        return self.usage(tenant) + milli <= self.of(tenant)

    def borrowed(self, tenant: str) -> int:
        return max(0, self.usage(tenant) - self.of(tenant))

    def idle_total(self) -> int:
        tenants = set(self.quota) | set(self.used)
        return sum(max(0, self.of(t) - self.usage(t)) for t in tenants)

    def borrowed_total(self) -> int:
        return sum(self.borrowed(t) for t in set(self.used))

    def admits(self, tenant: str, milli: int) -> bool:
        if milli == 0 or self.within(tenant, milli):
            return True
        if not self.borrowing:
            return False
        # Borrowed <= idle holds after the charge iff total usage stays within total quota.
        total_used = sum(self.used.values()) + milli
        return total_used <= sum(self.quota.values())

    def charge(self, tenant: str, milli: int) -> None:
        self.used[tenant] = self.usage(tenant) + milli

    def explain(self, tenant: str, milli: int) -> str:
        spare = max(0, self.idle_total() - self.borrowed_total())
        lent = ("borrowing is off" if not self.borrowing
                else f"only {spare} milli-GPU of idle quota is left to borrow")
        return (f"tenant {tenant!r} uses {self.usage(tenant)} of its {self.of(tenant)} milli-GPU "
                f"quota and asks {milli} more; {lent}")
