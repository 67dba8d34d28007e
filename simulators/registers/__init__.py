"""Register maps as data: one YAML file per simulated model, each naming its public source.

Load them with `simulators.register_map.load_register_map(model)`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["REGISTER_DIR"]

REGISTER_DIR = Path(__file__).resolve().parent
