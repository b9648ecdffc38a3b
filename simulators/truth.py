"""The ground-truth file: one JSON object per line, one line per event."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulators.errors import SimulatorError
from simulators.fleet import TruthEvent


def write_truth(events: Iterable[TruthEvent], path: Path) -> int:
    """Write the events as JSONL (replacing the file); returns how many.

    Raises:
        SimulatorError: the file cannot be written.
    """
    lines = [json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in events]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines), encoding="utf-8")
    except OSError as exc:
        raise SimulatorError(f"{path}: cannot write ground truth: {exc}") from exc
    return len(lines)


def read_truth(path: Path) -> list[dict[str, Any]]:
    """The events of a ground-truth file, as written by :func:`write_truth`."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
