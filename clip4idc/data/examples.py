"""The bundled example pairs (``clip4idc/assets/examples``): one per change type and a no-change one,
shown by ``clip4idc examples`` and the app."""

from __future__ import annotations

import json
from pathlib import Path

EXAMPLES_DIR = Path(__file__).parents[1] / "assets" / "examples"


def load_examples() -> list[dict]:
    """The bundled example pairs (``clip4idc/assets/examples/examples.json``); empty if absent."""
    index = EXAMPLES_DIR / "examples.json"
    if not index.exists():
        return []
    data = json.loads(index.read_text())
    return [
        {**ex, "before": str(EXAMPLES_DIR / ex["before"]), "after": str(EXAMPLES_DIR / ex["after"])}
        for ex in data.get("examples", [])
    ]
