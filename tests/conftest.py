"""Shared test set-up: float64 in JAX for every test (STYLE.md point 10), and one JAX
compilation cache for the console scripts the CLI tests start, so that a program compiled by
one subprocess is loaded, not compiled again, by the next (the cache changes no result: it
stores the compiled executable)."""

import os

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="session", autouse=True)
def _subprocess_compilation_cache(tmp_path_factory):
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # the user's own cache
        yield
        return
    settings = dict(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    os.environ.update(settings)
    yield
    for name in settings:
        os.environ.pop(name, None)
