"""Helper of the CLI tests: how to call an installed console script."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def console_script(name: str) -> list[str]:
    """The installed console script (next to this Python first), else ``python -m glacier``."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-m", "glacier", name.removeprefix("glacier-")]
