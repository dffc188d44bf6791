"""Who is calling and what they may do: pure rules, checked by the API before any write."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gpucloud.core.errors import Forbidden


class Role(StrEnum):
    ADMIN = "admin"  # manages users and tokens of its tenant
    MEMBER = "member"  # runs and cancels work
    VIEWER = "viewer"  # reads only


_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    user_id: str
    user_name: str
    tenant_id: str
    tenant_name: str
    role: Role
    is_operator: bool  # an admin of the operator tenant: sees and manages every tenant

    def can_see(self, tenant_id: str) -> bool:
        return self.is_operator or tenant_id == self.tenant_id

    def require(self, role: Role, action: str) -> None:
        if _RANK[self.role] < _RANK[role]:
            raise Forbidden(f"{action} needs the {role.value} role; you are {self.role.value}")

    def require_operator(self, action: str) -> None:
        if not self.is_operator:
            raise Forbidden(f"{action} is for operators only")
