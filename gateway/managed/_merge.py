"""The configuration a push makes: the pushed keys, the local-only keys of the local file, the
pushed profiles' folders; validated by the gateway's own validator (gateway.config)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, parse_config
from gateway.managed._store import PROFILE_DIR_KEYS, profile_problems
from gateway.sources import SourceKeys
from parkpulse.errors import FieldError, ValidationReport
from parkpulse.wire import LOCAL_ONLY_KEYS, ConfigPush

__all__ = ["effective_config", "local_part", "summarise"]


def _path_keys() -> list[str]:
    return [name for name, info in SourceKeys.model_fields.items() if info.annotation in (Path, Path | None)]


def local_part(local: GatewayConfig) -> dict[str, Any]:
    """The local file's keys no push may change (identity, uplink, spool, http, managed)."""
    keys = set(LOCAL_ONLY_KEYS) & set(GatewayConfig.model_fields)
    return local.model_dump(mode="json", include=keys, exclude_none=False)


def effective_config(local: GatewayConfig, push: ConfigPush, vdir: Path) -> GatewayConfig:
    """Merge and validate; raises ValidationReport with every problem (paths as in the pushed document)."""
    source = f"config version {push.version}"
    problems = [FieldError(p, v, r) for p, v, r in profile_problems(push.config, push.profiles)]
    if problems:
        raise ValidationReport(source, problems)
    raw: dict[str, Any] = copy.deepcopy(push.config)
    for name in _path_keys():  # a path in the push is relative to its version folder
        if isinstance(raw.get(name), str) and not Path(raw[name]).is_absolute():
            raw[name] = str(vdir / raw[name])
    for src, profs in push.profiles.items():
        if profs and src in PROFILE_DIR_KEYS:
            raw[PROFILE_DIR_KEYS[src]] = str(vdir / "profiles" / src)
    raw.update(local_part(local))
    return parse_config(raw, source)


def summarise(problems: list[FieldError], first: int = 3) -> str:
    """The first few problems with their paths, on one line, for the status `reason`."""
    shown = "; ".join(str(p) for p in problems[:first])
    more = len(problems) - first
    return shown + (f"; and {more} more" if more > 0 else "")
