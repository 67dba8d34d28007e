"""Who may see what: a signed-in user's roles turned into SQL parameters.

Every console query carries the same predicate, built from fixed text and bound parameters only:
    (%(s_admin)s OR <alias>.park_id = ANY(%(s_parks)s) OR <alias>.firm_id = ANY(%(s_firms)s))
- admin: everything;  inspector: the parks granted;  park_manager: one park;
- operator: one firm (its alerts, gateways, devices and firm page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ROLES", "Scope", "scope_sql"]

ROLES = ("admin", "inspector", "park_manager", "operator")
_ALIASES = frozenset({"a", "f", "g", "d", "r", "v", "k", "c", "e", "x"})


@dataclass(frozen=True)
class Scope:
    user: str
    display_name: str | None
    roles: frozenset[str]
    parks: tuple[str, ...]
    firms: tuple[str, ...]

    @property
    def admin(self) -> bool:
        return "admin" in self.roles

    @property
    def can_act(self) -> bool:
        """Acknowledge and resolve alerts (operators may only comment)."""
        return bool(self.roles & {"admin", "inspector", "park_manager"})

    def params(self) -> dict[str, Any]:
        return {"s_admin": self.admin, "s_parks": list(self.parks), "s_firms": list(self.firms)}

    def sees(self, park_id: str | None, firm_id: str | None) -> bool:
        """Same rule as the SQL predicate, for notifications that carry only ids."""
        return self.admin or (park_id in self.parks) or (firm_id is not None and firm_id in self.firms)


def scope_sql(alias: str) -> str:
    """The scope predicate for a table alias (a fixed letter, never user input)."""
    if alias not in _ALIASES:
        raise ValueError(f"scope alias {alias!r} is not one of the fixed aliases")
    return f"(%(s_admin)s OR {alias}.park_id = ANY(%(s_parks)s) OR {alias}.firm_id = ANY(%(s_firms)s))"
