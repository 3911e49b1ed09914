"""``glacier.compile``: strongly typed optimiser states and the persistent compilation cache
of the console scripts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest

from glacier import compile as comp


def test_strong_types_keeps_values_and_drops_weak_types():
    params = {"a": jnp.asarray(0.5), "h": jnp.ones(3)}
    state = optax.lbfgs().init(params)
    assert any(getattr(x, "weak_type", False) for x in jax.tree_util.tree_leaves(state))
    strong = comp.strong_types((params, state))
    leaves = jax.tree_util.tree_leaves(strong)
    assert not any(getattr(x, "weak_type", False) for x in leaves)
    for x, y in zip(jax.tree_util.tree_leaves((params, state)), leaves, strict=True):
        assert jnp.asarray(x).dtype == y.dtype and jnp.array_equal(x, y)


@pytest.fixture
def jax_cache_setting():
    """Put JAX's cache settings back after a test changes them (JAX opens its cache at the
    first compilation with a directory set: ``reset_cache`` makes it open the new one)."""
    from jax.experimental.compilation_cache import compilation_cache

    saved = (jax.config.jax_compilation_cache_dir,
             jax.config.jax_persistent_cache_min_compile_time_secs)
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", saved[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", saved[1])
    compilation_cache.reset_cache()


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path, jax_cache_setting):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("GLACIER_CACHE_DIR", raising=False)
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert comp.cache_dir() == tmp_path / "xdg" / "glacier" / "jax"
    assert comp.enable_persistent_cache() == tmp_path / "xdg" / "glacier" / "jax"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xdg" / "glacier" / "jax")
    assert (tmp_path / "xdg" / "glacier" / "jax").is_dir()
    assert jax.config.jax_persistent_cache_min_compile_time_secs == comp.MIN_COMPILE_SECS
    # and it is used: a compiled program lands there
    jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + 7.5)(jnp.ones((40, 40)))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.jit(lambda x: jnp.tanh(x) @ jnp.cos(x).T - 3.5)(jnp.ones((40, 40)))
    assert any((tmp_path / "xdg" / "glacier" / "jax").iterdir())
    monkeypatch.setenv("GLACIER_CACHE_DIR", str(tmp_path / "mine"))
    assert comp.enable_persistent_cache() == tmp_path / "mine"
    for off in ("off", "", "0"):
        monkeypatch.setenv("GLACIER_CACHE_DIR", off)
        assert comp.cache_dir() is None and comp.enable_persistent_cache() is None
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GLACIER_CACHE_DIR", str(tmp_path / "file" / "cache"))
    assert comp.enable_persistent_cache() is None  # cannot be created: no cache, no error
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_own"))
    assert comp.enable_persistent_cache() == tmp_path / "jax_own"  # JAX's own setting wins


def test_compile_clock_counts_compilations_only_while_it_runs():
    f = jax.jit(lambda x: jnp.sin(x) * 3.0 + x)
    x = jnp.ones(7)
    with comp.CompileClock() as clock:
        f(x)
        first = (clock.seconds, clock.programs)
        f(x)  # cached in memory: nothing compiled
    assert first[0] > 0 and first[1] == 1
    assert (clock.seconds, clock.programs) == first
    jax.jit(lambda x: x - 1.0)(x)  # after the clock stopped
    assert clock.programs == 1
