"""What the applications share: JAX set-up for a run, one-paragraph messages, progress bars."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import textwrap
from pathlib import Path

from ..errors import ConfigError
from ..io.cf import remove_stale


def configure_jax(x64: bool) -> None:
    """Turn on JAX's 64-bit mode (``glacier-simulate`` and ``glacier-invert`` always, so that
    time is float64 even for float32 fields; ``glacier-train`` for float64 runs: the library
    itself never changes JAX's global configuration) and quieten the loggers that would print
    on every run. JAX's persistent compilation cache is on (``compile.cache_dir``:
    ``GLACIER_CACHE_DIR=off`` switches it off)."""
    import jax

    from ..compile import enable_persistent_cache

    enable_persistent_cache()
    if x64:
        jax.config.update("jax_enable_x64", True)
    for name in ("jax", "matplotlib"):  # not "no TPU" or "new font cache" on every run
        logging.getLogger(name).setLevel(logging.WARNING)


def output_location(out_dir, *names: str) -> Path:
    """``out_dir`` created if needed and checked writable, and none of ``names`` in it a
    directory; ``ConfigError`` (exit 2) saying what and how to fix it otherwise."""
    out_dir = Path(out_dir)
    fix = "Choose another run directory with hydra.run.dir=DIR."
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise ConfigError(f"the run directory {out_dir} cannot be created or written "
                          f"({e.strerror or e}). {fix}") from e
    for name in names:
        if (out_dir / name).is_dir():
            raise ConfigError(f"{out_dir / name} is a directory, so the output {name} cannot "
                              f"be written there. Remove or rename it, or {fix[0].lower()}"
                              f"{fix[1:]}")
    if not os.access(out_dir, os.W_OK):
        raise ConfigError(f"the run directory {out_dir} is not writable. {fix}")
    remove_stale(out_dir)  # what a run killed mid-write left
    return out_dir


class _Tee:
    """A text stream that also appends what is written to a log file (progress-bar redraws,
    which contain carriage returns, only to the stream)."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text):
        if "\r" not in text:
            self.log.write(text)
            self.log.flush()
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


class job_log:
    """Context: stdout and stderr also go to Hydra's job log (``<command>.log`` of the run
    directory), so the summary line, warnings and errors are kept with the run."""

    def __enter__(self):
        files = [h.baseFilename for h in logging.getLogger().handlers
                 if isinstance(h, logging.FileHandler)]
        self.saved = sys.stdout, sys.stderr
        self.log = None
        if files:
            try:
                self.log = open(files[0], "a", encoding="utf-8")  # noqa: SIM115
            except OSError:
                return self
            sys.stdout, sys.stderr = _Tee(sys.stdout, self.log), _Tee(sys.stderr, self.log)
        return self

    def __exit__(self, *exc):
        sys.stdout, sys.stderr = self.saved
        if self.log is not None:
            self.log.close()
        return False


def paragraph(text: str) -> str:
    """``text`` as one wrapped paragraph (100 columns)."""
    return textwrap.fill(" ".join(str(text).split()), width=100, break_long_words=False,
                         break_on_hyphens=False)


def warn(text: str) -> None:
    """Print ``text`` as one paragraph on stderr."""
    print(paragraph(text), file=sys.stderr)


def bar(total: float, desc: str, fmt: str, initial: float = 0, unit: str = "it"):
    """A tqdm progress bar that disappears when done (and is off when not on a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=None, leave=False,
                bar_format=fmt)
