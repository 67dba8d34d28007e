"""ParkPulse web console and HTTP API: live alerts, evidence, firm pages, gateway health.

Public surface: `create_app(settings)` builds the FastAPI application, `ConsoleSettings` holds
its configuration (env prefix PARKPULSE_CONSOLE_), `console.accounts` manages users and roles.
Imported lazily so `parkpulse users …` does not load the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.app import create_app
    from console.settings import ConsoleSettings

__all__ = ["ConsoleSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from console.app import create_app

        return create_app
    if name == "ConsoleSettings":
        from console.settings import ConsoleSettings

        return ConsoleSettings
    raise AttributeError(f"module 'console' has no attribute {name!r}")
