"""ParkPulse web console and HTTP API: live alerts, evidence, firm pages, gateway health.

Public surface: `create_app(settings)` builds the FastAPI application, `ConsoleSettings` holds
its configuration (env prefix PARKPULSE_CONSOLE_), `accounts` manages users and roles.
"""

from console.app import create_app
from console.settings import ConsoleSettings

__all__ = ["ConsoleSettings", "create_app"]
