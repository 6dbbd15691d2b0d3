"""Who is asking: the roles and the principal acting in one (identity.py resolves it from the deployment).

What each role sees is not decided here: each reads its audience's published snapshot
(warehouse/publish), which holds nothing the audience may not see.
"""

from __future__ import annotations

from dataclasses import dataclass

DATA_ENGINEER = "data_engineer"
DISTRICT_ANALYST = "district_analyst"
COMMUNITY_STAFF = "community_staff"
ROLES = (DATA_ENGINEER, DISTRICT_ANALYST, COMMUNITY_STAFF)



class AccessDenied(Exception):
    """A principal asked for something its role does not allow; the message says what and why."""


@dataclass(frozen=True)
class Principal:
    """A user acting in a role; community staff are bound to one community."""

    user: str
    role: str
    community: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise AccessDenied(f"unknown role {self.role!r}; choose one of {', '.join(ROLES)}")
        if self.role == COMMUNITY_STAFF and not self.community:
            raise AccessDenied(f"user {self.user!r} is community staff but bound to no community; "
                               f"an administrator names it in the access file")
