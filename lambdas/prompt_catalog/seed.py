"""Load a seed file (prompts, then chains, each with optional aliases) into the catalog.

Used by the example test and by whoever seeds a fresh deployment: `examples/*.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .models import Kind
from .service import Catalog

EXAMPLES = Path(__file__).parent / "examples"
SECTIONS: tuple[tuple[Kind, str], ...] = (("prompt", "prompts"), ("chain", "chains"))


def load_seed(catalog: Catalog, business_unit: str, caller: str, path: Path) -> dict[str, Any]:
    seed = json.loads(path.read_text())
    for kind, section in SECTIONS:
        for entry in seed.get(section, []):
            body = {k: v for k, v in entry.items() if k != "aliases"}
            catalog.create(kind, business_unit, caller, body)
            for alias, version in entry.get("aliases", {}).items():
                catalog.move_alias(kind, business_unit, caller, body["name"], alias, {"version": version})
    return dict(seed)
