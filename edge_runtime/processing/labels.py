"""Labels files: one label per line, or ``index label`` / ``index: label`` pairs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.errors import InputError

INDEXED_LINE = re.compile(r"^\s*(\d+)[\s:]+(.+?)\s*$")


@dataclass(frozen=True)
class Labels:
    """Class index -> label; unknown indices are named by their number."""

    names: Mapping[int, str] = field(default_factory=dict)

    def name(self, index: int) -> str:
        return self.names.get(index, str(index))

    def __len__(self) -> int:
        return len(self.names)


def parse_labels(text: str) -> Labels:
    """Plain lines map to 0..n-1; if every line is ``N label``, the numbers are used."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    matches = [INDEXED_LINE.match(line) for line in lines]
    if lines and all(matches):
        return Labels({int(m.group(1)): m.group(2) for m in matches if m})
    return Labels(dict(enumerate(lines)))


def load_labels(path: Path | None) -> Labels:
    if path is None:
        return Labels()
    try:
        return parse_labels(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError(f"labels file {path} does not exist",
                         hint="fix model.labels in the config") from err
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"labels file {path} cannot be read: {err}") from err
