"""Atomic file writes: a file appears complete or not at all, never half-written (for whole directories:
checkpoints.store.atomic_directory)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` (UTF-8) to `path`: a temporary file in the same folder (created if missing), then a rename
    over `path`. On any failure `path` keeps what it held and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2, ensure_ascii: bool = False,
               default: Callable[[Any], Any] | None = None) -> Path:
    """`data` as JSON (and a final newline), atomically (`atomic_write_text`)."""
    return atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=ensure_ascii, default=default) + "\n")
