"""Managed configuration: the gateway runs what the platform pushes on its retained config topic.

`ManagedController` receives a push (`parkpulse.wire.parse_config_push`), merges it with the
local-only keys of the local file, writes it with its profiles to the state folder, validates
it with the gateway's own validator, has the gateway apply it without a restart (`reconcile`:
unchanged sources keep running), keeps it on probation and rolls back to the last good version
by itself. See gateway/README.md, "Managed configuration".
"""

from __future__ import annotations

from gateway.managed._controller import Host, ManagedController
from gateway.managed._errors import ManagedStateError
from gateway.managed._merge import effective_config, local_part, summarise
from gateway.managed._reconcile import PlanUpdate, Reconciliation, fingerprint, reconcile
from gateway.managed._state import ManagedState, VersionRef, load_state, save_state
from gateway.managed._store import PROFILE_DIR_KEYS, prune_versions, read_push, version_dir, write_push

__all__ = [
    "PROFILE_DIR_KEYS",
    "Host",
    "ManagedController",
    "ManagedState",
    "ManagedStateError",
    "PlanUpdate",
    "Reconciliation",
    "VersionRef",
    "effective_config",
    "fingerprint",
    "load_state",
    "local_part",
    "prune_versions",
    "read_push",
    "reconcile",
    "save_state",
    "summarise",
    "version_dir",
    "write_push",
]
