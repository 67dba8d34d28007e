"""Pushed versions on disk: `versions/<version>/push.json` (the push as received: config, profiles,
who, when, why) and `versions/<version>/profiles/<source>/<name>.yaml` (its profiles, where the
source's own loader reads them).

A version folder is written in full under a temporary name and renamed into place, so a folder
that exists is complete.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import yaml

from gateway.managed._errors import ManagedStateError
from gateway.managed._state import atomic_write
from parkpulse.wire import ConfigPush, config_digest

__all__ = ["PROFILE_DIR_KEYS", "profile_problems", "prune_versions", "read_push", "version_dir", "write_push"]

PROFILE_DIR_KEYS = {"modbus": "profiles_dir", "dlt645": "dlt645_profiles_dir"}
"""Per source that has profiles: the key of the gateway file naming its extra-profile folder."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def version_dir(root: Path, version: int) -> Path:
    return root / "versions" / str(version)


def profile_problems(
    config: dict[str, Any], profiles: dict[str, dict[str, Any]]
) -> list[tuple[str, object, str]]:
    """(path, value, reason) for profiles that cannot be written: unknown source, unsafe name,
    a name that differs from the document's, a source whose folder key the config sets too."""
    out: list[tuple[str, object, str]] = []
    for source, profs in profiles.items():
        key = PROFILE_DIR_KEYS.get(source)
        if key is None:
            if profs:
                out.append(
                    (
                        f"profiles.{source}",
                        source,
                        f"no source with profiles by that name (known: {', '.join(PROFILE_DIR_KEYS)})",
                    )
                )
            continue
        if profs and config.get(key) is not None:
            out.append(
                (
                    f"config.{key}",
                    config[key],
                    f"set together with pushed profiles.{source}; push one or the other",
                )
            )
        for name, doc in profs.items():
            at = f"profiles.{source}.{name}"
            if not _SAFE_NAME.match(name):
                out.append((at, name, "profile name must be letters, digits, - or _ (at most 100)"))
            elif not isinstance(doc, dict):
                out.append((at, type(doc).__name__, "must be a profile document (a mapping)"))
            elif doc.get("name", name) != name:
                out.append((f"{at}.name", doc.get("name"), f"must equal the profile's key {name!r}"))
    return out


def write_push(root: Path, push: ConfigPush) -> Path:
    """Write the push and its profiles under `versions/<version>/` (replacing an earlier copy); its folder."""
    final = version_dir(root, push.version)
    tmp = final.with_name(f".{push.version}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        doc = {
            "version": push.version,
            "sha256": push.sha256,
            "issued_at": push.issued_at,
            "issued_by": push.issued_by,
            "reason": push.reason,
            "config": push.config,
            "profiles": push.profiles,
        }
        for source, profs in push.profiles.items():
            if source not in PROFILE_DIR_KEYS or not profs:
                continue
            pdir = tmp / "profiles" / source
            pdir.mkdir(parents=True)
            for name, prof in profs.items():
                atomic_write(
                    pdir / f"{name}.yaml",
                    yaml.safe_dump(prof, allow_unicode=True, sort_keys=False).encode("utf-8"),
                )
        atomic_write(tmp / "push.json", orjson.dumps(doc))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    except OSError as exc:
        raise ManagedStateError(f"{final}: cannot write the pushed version: {exc.strerror}") from None
    return final


def read_push(root: Path, version: int) -> ConfigPush:
    """A version written by `write_push`; ManagedStateError when it is missing or damaged."""
    path = version_dir(root, version) / "push.json"
    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ManagedStateError(f"{path}: cannot read: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise ManagedStateError(f"{path}: not JSON") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("config"), dict)
        or not isinstance(doc.get("profiles"), dict)
    ):
        raise ManagedStateError(f"{path}: config and profiles must be JSON objects")
    if doc.get("sha256") != config_digest(doc["config"], doc["profiles"]):
        raise ManagedStateError(f"{path}: sha256 does not match its config (damaged file)")
    return ConfigPush(
        version=version,
        sha256=doc["sha256"],
        config=doc["config"],
        profiles=doc["profiles"],
        issued_at=int(doc.get("issued_at") or 0),
        issued_by=str(doc.get("issued_by", "")),
        reason=str(doc.get("reason", "")),
    )


def prune_versions(root: Path, keep: set[int]) -> list[int]:
    """Remove version folders not in `keep`; the versions removed."""
    removed: list[int] = []
    base = root / "versions"
    if not base.is_dir():
        return removed
    for entry in base.iterdir():
        if entry.name.isdigit() and int(entry.name) not in keep:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(int(entry.name))
    return sorted(removed)
