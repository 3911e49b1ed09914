"""What keeps JAX from compiling a program twice.

- ``strong_types``: an optimiser's first state (``optax``'s ``init``) and parameters built from
  Python numbers hold *weakly typed* arrays; the state a compiled step returns holds strongly
  typed ones of the same dtype. JAX keys its cache on the weak-type flag too, so the second
  iteration of every inversion and of the first L-BFGS epoch compiled the whole step again
  (measured: 6.5 s of a 13 s inversion on a 15 x 21 twin). Loops make their state strongly
  typed once, before the first step.
- ``enable_persistent_cache``: the console scripts keep compiled programs on disk between runs
  (``cache_dir``), so that a rerun, a resumed training or the next glacier of the same shape
  does not compile again.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp


def strong_types(tree):
    """``tree`` with every array leaf as a strongly typed array of its own dtype (values
    unchanged; non-array leaves as they are)."""
    def strong(x):
        if isinstance(x, jax.Array | float | int) and not isinstance(x, bool):
            x = jnp.asarray(x)
            return jnp.asarray(x, dtype=x.dtype) if x.weak_type else x
        return x
    return jax.tree_util.tree_map(strong, tree)


MIN_COMPILE_SECS = 0.1
"""Programs that compile faster than this are not written to the persistent cache."""


def cache_dir() -> Path | None:
    """Where the console scripts keep JAX's persistent compilation cache: ``$GLACIER_CACHE_DIR``
    (``off`` or empty: no cache), else ``$XDG_CACHE_HOME/glacier/jax`` (default
    ``~/.cache/glacier/jax``)."""
    value = os.environ.get("GLACIER_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none", "false") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "glacier" / "jax"


def enable_persistent_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache in ``cache_dir()``, so that a second run of
    the same glacier and settings loads its compiled programs instead of compiling them (the
    cache stores executables keyed by the program and the compiler: results do not change).
    JAX's own ``JAX_COMPILATION_CACHE_DIR`` wins when set; a directory that cannot be created
    or written means no cache, never an error. Returns the directory in use (None: none)."""
    own = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if own:
        return Path(own)
    directory = cache_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(directory, os.W_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        # JAX's default (1 s) keeps out most of a run's programs, which compile in 0.1-1 s
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
    return directory


class CompileClock:
    """Seconds JAX spends compiling (tracing, lowering to MLIR and XLA's backend compile) and
    the number of programs XLA compiled, from JAX's own monitoring events, while the clock
    runs: ``with CompileClock() as clock: ...; clock.seconds``. A program loaded from the
    persistent cache counts its (short) tracing and lowering only."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
              "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self):
        self.seconds = 0.0
        self.programs = 0
        self._on = False

    def _listen(self, name: str, secs: float, **_) -> None:
        if name in self.EVENTS:
            self.seconds += float(secs)
            self.programs += name == self.EVENTS[-1]

    def __enter__(self) -> CompileClock:
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        self._on = True
        return self

    def __exit__(self, *exc) -> None:
        if self._on:
            jax.monitoring.unregister_event_duration_listener(self._listen)
            self._on = False
