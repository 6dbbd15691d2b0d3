"""Who may see what: roles, their masking rules, and the access log every personal-data read writes."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import duckdb

from warehouse.masking import mask_id, mask_phone

DATA_ENGINEER = "data_engineer"
DISTRICT_ANALYST = "district_analyst"
COMMUNITY_STAFF = "community_staff"
ROLES = (DATA_ENGINEER, DISTRICT_ANALYST, COMMUNITY_STAFF)

# Full ID numbers and phones are for the people who act on them: a data engineer fixing a load,
# and community staff who visit and call their own residents. Analysts work on pseudonyms.
FULL_ID_ROLES = frozenset({DATA_ENGINEER})
FULL_PHONE_ROLES = frozenset({DATA_ENGINEER, COMMUNITY_STAFF})


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
                               f"set ONENET_COMMUNITY or pass --community")

    @property
    def sees_full_ids(self) -> bool:
        return self.role in FULL_ID_ROLES

    @property
    def sees_full_phones(self) -> bool:
        return self.role in FULL_PHONE_ROLES

    def id_number(self, value: str | None) -> str | None:
        """The ID number as this principal may see it."""
        return value if self.sees_full_ids else mask_id(value)

    def phone(self, value: str | None) -> str | None:
        """The phone number as this principal may see it."""
        return value if self.sees_full_phones else mask_phone(value)

    def check_community(self, community: str | None) -> None:
        """Community staff read their own community only; others may read any or all."""
        if self.role == COMMUNITY_STAFF and community != self.community:
            raise AccessDenied(f"user {self.user!r} is community staff of {self.community}; "
                               f"{community or 'the whole district'} is not theirs to read")


def principal_from_env(role: str | None = None, community: str | None = None,
                       user: str | None = None) -> Principal:
    """The acting principal: explicit values first, then ONENET_USER / ONENET_ROLE / ONENET_COMMUNITY.

    With nothing set, the least privileged role that still works on the whole district
    (district analyst) is assumed, so a forgotten setting never unmasks anything. A community
    binding set by the deployment (ONENET_COMMUNITY) wins over one given on the command line:
    there, `--community` only names what to read, and reading another community is refused.
    """
    bound = os.environ.get("ONENET_COMMUNITY") or None
    return Principal(user=user or os.environ.get("ONENET_USER") or os.environ.get("USER") or "unknown",
                     role=role or os.environ.get("ONENET_ROLE") or DISTRICT_ANALYST,
                     community=bound or community or None)


def log_access(con: duckdb.DuckDBPyConnection, who: Principal, action: str, target: str,
               row_count: int, *, full_values: bool | None = None) -> str:
    """Write one row to meta.access_log and return its id."""
    access_id = uuid.uuid4().hex
    if full_values is None:
        full_values = who.sees_full_ids or who.sees_full_phones
    con.execute("insert into meta.access_log values (?, now(), ?, ?, ?, ?, ?, ?, ?)",
                [access_id, who.user, who.role, who.community, action, target, int(row_count), full_values])
    return access_id
