"""docs/schema/*.schema.json are what the models say (`parkpulse wire schema` writes them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from parkpulse.wire import Batch, Status

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schema"


@pytest.mark.parametrize(("name", "model"), [("batch", Batch), ("status", Status)])
def test_the_published_schema_matches_the_model(name: str, model: type[BaseModel]) -> None:
    on_disk = json.loads((SCHEMA / f"{name}.schema.json").read_text(encoding="utf-8"))
    assert on_disk == model.model_json_schema(), f"run `parkpulse wire schema` to refresh {name}.schema.json"
