"""Inversion (glacier.invert): the twin (known bed, radar lines on ~5 % of the ice cells),
spatial folds, the calibrated baseline, cross-validation, constraints and determinism."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from glacier import experiments, laws
from glacier import invert as iv

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="module")
def twin():
    return experiments.twin_inversion()


@pytest.fixture(scope="module")
def twin_data(twin):
    return iv.InversionData.from_domain(twin.domain, twin.physics)


@pytest.fixture(scope="module")
def small_data():
    """A coarser, smaller twin (15 x 21 cells of 300 m, 20 radar cells) for the tests of
    mechanics rather than accuracy: each compiles and runs in a fraction of the time."""
    small = experiments.twin_inversion(nx=15, ny=21, dx=300.0, years=300.0)
    return iv.InversionData.from_domain(small.domain, small.physics)


def rel_rmse(H, twin):
    m = twin.domain.mask > 0
    H_true = twin.thickness_true
    return float(np.sqrt(np.mean((H - H_true)[m] ** 2)) / H_true[m].mean())


def test_twin_is_a_steady_glacier_seen_on_five_percent_of_its_cells(twin):
    m = twin.domain.mask > 0
    assert 0.03 <= twin.obs_fraction <= 0.07
    assert m.sum() > 500 and twin.thickness_true[m].mean() > 50.0
    # observed cells lie on the radar lines only, with the true thickness
    seen = np.isfinite(twin.domain.thickness_obs)
    assert np.unique(np.nonzero(seen)[0]).size == 3
    np.testing.assert_allclose(twin.domain.thickness_obs[seen], twin.thickness_true[seen])


@pytest.mark.parametrize("A_factor", [3.0])
def test_twin_recovers_thickness_within_ten_percent(twin, A_factor):
    """Start from a wrong A (x3) and the calibrated perfect-plasticity thickness: the adjoint
    inversion of thickness and scalar A recovers the true thickness within 10 % RMSE of the
    mean thickness, far better than the baseline, and A within a factor 1.5."""
    physics = twin.physics.replace(A=twin.physics.A * A_factor)
    data = iv.InversionData.from_domain(twin.domain, physics)
    H_base, _ = iv.baseline(data, data.obs_count)
    result = iv.invert(data, iv.InvertOptions())
    err = rel_rmse(result.thickness, twin)
    assert err <= 0.10, err
    assert err < 0.5 * rel_rmse(H_base, twin)
    assert 1 / 1.5 < result.A / twin.physics.A < 1.5
    # every term reported, one value per iteration
    n = len(result.history["total"])
    assert n == iv.InvertOptions().iterations + iv.InvertOptions().A_warmup
    assert {"obs", "surface", "smooth_thickness", "total"} <= set(result.history)
    assert all(len(v) == n for v in result.history.values())
    # constraints: H >= 0, no ice outside the mask, bed = surface - H
    assert result.thickness.min() >= 0.0
    assert np.all(result.thickness[twin.domain.mask == 0] == 0.0)
    np.testing.assert_allclose(result.bed, data.surface - result.thickness)


@pytest.mark.slow  # 36 s (two full inversions); run with -m slow
def test_physics_adds_to_the_interpolation(twin, twin_data):
    """Without the relaxation run (relax_years=0) the same cost is a smoothed interpolation of
    the lines around the baseline; the surface term is what brings the error below 10 %."""
    opts = iv.InvertOptions(A="none")
    with_physics = rel_rmse(iv.invert(twin_data, opts).thickness, twin)
    without = rel_rmse(iv.invert(twin_data, dataclasses.replace(opts, relax_years=0.0))
                       .thickness, twin)
    assert with_physics < 0.6 * without


def test_baseline_calibrates_the_basal_stress_exactly(twin_data):
    f, _ = iv.baseline(twin_data, twin_data.obs_count)
    f = f / iv.baseline(twin_data, twin_data.obs_count)[1]  # the thickness at tau = 1 Pa
    fake = dataclasses.replace(twin_data, thickness_obs=np.where(
        twin_data.observed, 123_000.0 * f, np.nan))
    H, tau = iv.baseline(fake, fake.obs_count)
    assert tau == pytest.approx(123_000.0, rel=1e-12)


def test_spatial_folds_deal_whole_blocks(twin_data):
    k, block = 3, 600.0
    folds = iv.spatial_folds(twin_data, k, block=block, seed=1)
    seen = twin_data.observed
    assert np.all((folds >= 0) == seen)
    assert set(np.unique(folds[seen])) == set(range(k))
    nb = int(round(block / twin_data.grid.dx))
    jj, ii = np.indices(folds.shape)
    blocks = (jj // nb) * 10_000 + ii // nb
    for b in np.unique(blocks[seen]):  # one fold per block
        assert np.unique(folds[seen & (blocks == b)]).size == 1
    counts = np.bincount(folds[seen], minlength=k)
    assert counts.max() - counts.min() <= nb * nb
    np.testing.assert_array_equal(folds, iv.spatial_folds(twin_data, k, block=block, seed=1))
    with pytest.raises(Exception, match="cv_folds"):
        iv.spatial_folds(twin_data, 1)


def test_cross_validation_scores_held_out_cells(small_data):
    twin_data = small_data
    opts = iv.InvertOptions(A="none", iterations=8, relax_years=2.0)
    cv = iv.cross_validate(twin_data, opts, 2, block=600.0)
    held = cv.folds >= 0
    assert np.all(np.isfinite(cv.held_out[held])) and np.all(np.isnan(cv.held_out[~held]))
    obs = twin_data.thickness_obs
    r = (cv.held_out - obs)[held]
    assert cv.rmse == pytest.approx(np.sqrt(np.mean(r ** 2)))
    assert cv.bias == pytest.approx(np.mean(r))
    assert 0.0 <= cv.within_spread <= 1.0
    # the error floor gives 95 % coverage of the held-out cells
    floor_cov = np.mean(np.abs(r) <= 2 * np.sqrt(cv.thickness_std[held] ** 2
                                                 + cv.error_floor ** 2))
    assert floor_cov >= 0.95 and cv.error_floor >= 0
    assert cv.thickness_std.shape == obs.shape and np.all(cv.thickness_std >= 0)
    assert np.isfinite(cv.baseline_rmse) and cv.baseline_rmse > 0
    # each fold's inversion never saw its held-out cells: the prediction differs from the
    # final inversion's, which fits them
    assert len(cv.predictions) == 2 and cv.final.iterations == 8


@pytest.mark.slow  # 73 s; the CLI's rerun-from-the-saved-config test covers it
def test_inversion_is_deterministic(twin_data):
    opts = iv.InvertOptions(iterations=4, A_warmup=2, relax_years=2.0)
    a = iv.invert(twin_data, opts)
    b = iv.invert(twin_data, opts)
    np.testing.assert_array_equal(a.thickness, b.thickness)
    assert a.A == b.A and a.history == b.history


@pytest.mark.slow  # ~70-110 s on a 2-core AVX2 machine: run with -m slow
def test_thickness_observed_later_than_the_dem(twin, twin_data):
    """invert.obs_time > 0: the thickness control is the start of a transient run and the
    observations are compared with the run at obs_time (the twin is steady, so the same
    glacier must come out)."""
    result = iv.invert(twin_data, iv.InvertOptions(obs_time=2.0))
    assert rel_rmse(result.thickness, twin) <= 0.10


@pytest.mark.parametrize("name", [pytest.param("nn_A_of_T", marks=pytest.mark.slow),
                                  "nn_diffusivity"])
def test_functional_inversion_through_a_learned_law(small_data, name):
    twin_data = small_data
    law = (laws.NeuralAofT.create(hidden=(4,), seed=0) if name == "nn_A_of_T"
           else laws.NeuralDiffusivity.create(hidden=(4,), seed=0))
    opts = iv.InvertOptions(A="law", iterations=6, A_warmup=2, relax_years=2.0, law_l2=1e-3)
    res = iv.invert(twin_data, opts, law=law)
    cost = res.history["total"]
    assert cost[-1] < cost[2]  # the law stage lowers the cost
    assert "l2_law" in res.history and res.law is not None
    changed = jax.tree_util.tree_leaves(res.law)
    assert any(not np.array_equal(a, b) for a, b in zip(
        changed, jax.tree_util.tree_leaves(law), strict=True))
    A = np.asarray(res.A)
    assert np.all(A > 0) and (A.shape == twin_data.grid.shape if name == "nn_diffusivity"
                              else A.ndim == 0)


@pytest.mark.slow  # ~70-110 s on a 2-core AVX2 machine: run with -m slow
def test_surface_speed_observations_enter_the_cost(twin, twin_data):
    """Observed surface speeds (the true SIA speed on every other cell of the ice) add a
    misfit term; the inversion still recovers the thickness, and A from a start 3x off."""
    import jax.numpy as jnp

    from glacier import solver as slv
    from glacier.laws import GlenLaw

    ph = twin.physics
    law = GlenLaw(A=ph.A, n=ph.n, rho=ph.rho, g=ph.g)
    H = jnp.asarray(twin.thickness_true)
    speed = np.asarray(slv.surface_speed(H, jnp.asarray(twin.domain.bed), law,
                                         twin.domain.grid))
    jj, ii = np.indices(speed.shape)
    seen = (twin.domain.mask > 0) & ((jj + ii) % 2 == 0)
    data = dataclasses.replace(twin_data, velocity_obs=np.where(seen, speed, np.nan),
                               physics=ph.replace(A=3 * ph.A))
    res = iv.invert(data, iv.InvertOptions(velocity_error=20.0))
    assert "velocity" in res.history
    assert res.history["velocity"][-1] < res.history["velocity"][0]
    assert rel_rmse(res.thickness, twin) <= 0.10
    with pytest.raises(Exception, match="velocity_obs"):
        iv.invert(twin_data, iv.InvertOptions(velocity_error=5.0, iterations=1))


def test_gridded_A_and_adam_run(small_data):
    twin_data = small_data
    opts = iv.InvertOptions(A="field", optimizer="adam", lr=0.5, iterations=5, A_warmup=0,
                            relax_years=2.0)
    res = iv.invert(twin_data, opts)
    assert np.shape(res.A) == twin_data.grid.shape and np.all(res.A > 0)
    assert "smooth_A" in res.history and res.history["total"][-1] < res.history["total"][0]


def test_cost_gradient_matches_finite_differences(twin_data):
    """The adjoint gradient of the cost (through the relaxation run) against central
    differences in a random direction of the thickness and A controls.

    The start is made asymmetric by 1 % noise: on the mirror-symmetric twin the largest
    diffusivity, which sets the time step, is reached on two faces at once, where the cost
    has a kink (AD takes the mean of the two sides' derivatives, central differences see
    another combination after a few steps)."""
    opts = iv.InvertOptions(relax_years=2.0, balance_error=0.3)
    H0, _ = iv.baseline(twin_data, twin_data.obs_count)
    H0 = H0 * (1.0 + 0.01 * np.random.default_rng(1).standard_normal(H0.shape))
    inv = iv.Inverter(twin_data, opts, H_prior=H0)
    params = inv.init_params(H0)
    w = jax.numpy.asarray(twin_data.obs_count)
    st = dataclasses.replace(inv.static, budget=4096)

    def cost(p):
        return iv.cost.cost_terms(p, w, inv.consts, st)[0]

    g = jax.grad(cost)(params)
    rng = np.random.default_rng(0)
    d = {k: rng.standard_normal(np.shape(v)) for k, v in params.items()}
    exact = sum(float(np.sum(np.asarray(g[k]) * d[k])) for k in params)
    eps = 1e-4
    plus = cost({k: params[k] + eps * d[k] for k in params})
    minus = cost({k: params[k] - eps * d[k] for k in params})
    fd = float(plus - minus) / (2 * eps)
    assert fd == pytest.approx(exact, rel=1e-5)


def test_options_validate_in_their_own_terms():
    """InvertOptions is the invert node's schema (no copy to keep in step); it checks its
    values itself and names the field (the config layer prefixes ``invert.``)."""
    assert iv.InvertOptions(A="field").A == iv.InvertA.field == "field"
    for bad, words in [(dict(A="fields"), "none, scalar, field or law"),
                       (dict(obs_error=-1.0), "obs_error=-1"),
                       (dict(cv_folds=1), "cv_folds"), (dict(iterations=0), "iterations"),
                       (dict(balance_error=-0.1), "balance_error=-0.1"),
                       (dict(balance_contour=0.0), "balance_contour=0.0 must be positive"),
                       (dict(outline="shut"), "outline='shut' must be open or closed")]:
        with pytest.raises(ValueError, match=words):
            iv.InvertOptions(**bad)
    inv = iv.Inverter(iv.InversionData.from_domain(experiments.twin_inversion(
        nx=9, ny=13, years=20.0).domain), iv.InvertOptions(iterations=1, relax_years=1.0))
    static, consts = inv.static, dict(inv.consts)
    _, history, failure = inv.run(inv.init_params(10.0 * inv.data.mask),
                                  np.asarray(inv.data.obs_count))
    assert failure is None and len(history["total"]) == 1
    assert inv.static is static and inv.consts.keys() == consts.keys()  # run mutates nothing
    # what the compiled step does not read does not make a new program: folds, iteration
    # counts and the fields that enter as arrays (dhdt, the mass-balance shift, the DEM)
    other = iv.Inverter(inv.data, iv.InvertOptions(iterations=7, A_warmup=3, cv_folds=3,
                                                   relax_years=1.0, dhdt=-0.5,
                                                   slope_smoothing=100.0,
                                                   balance_contour=20.0))
    assert other.static == inv.static and hash(other.static) == hash(inv.static)
    assert iv.Inverter(inv.data, iv.InvertOptions(relax_years=2.0)).static != inv.static
    # nor does the second iteration (the optimiser state's weak types, glacier/compile.py)
    before = iv.cost.step._cache_size()
    other.run(other.init_params(10.0 * inv.data.mask), np.asarray(inv.data.obs_count))
    assert iv.cost.step._cache_size() - before <= 1  # once for these options, if new


def test_a_failing_iteration_keeps_the_last_good_state(twin_data, monkeypatch):
    """A non-finite cost in iteration 4 stops the inversion with the parameters of
    iteration 3 (the last finite cost) and says so; nothing is raised."""
    real = iv.cost.step
    calls = {"n": 0}

    def flaky(params, state, weights, consts, st):
        out = real(params, state, weights, consts, st)
        calls["n"] += 1
        return (*out[:2], np.nan, *out[3:]) if calls["n"] == 4 else out

    opts = iv.InvertOptions(A="none", iterations=6, relax_years=2.0)
    reference = iv.invert(twin_data, dataclasses.replace(opts, iterations=2))
    monkeypatch.setattr(iv.cost, "step", flaky)
    res = iv.invert(twin_data, opts)
    assert res.failure and "iteration 4" in res.failure
    assert len(res.history["total"]) == 3
    np.testing.assert_array_equal(res.thickness, reference.thickness)
    calls["n"] = 3  # the very first iteration fails: nothing good to keep
    with pytest.raises(Exception, match="failed at iteration 1"):
        iv.invert(twin_data, opts)


def test_A_stays_within_its_factor_of_the_prior():
    """ln A - ln A_prior = ln R tanh(A_step a / ln R): inside +-ln R for any control, the
    identity to first order, and ``A_control`` its inverse; R = 0 is unbounded."""
    from glacier.invert import cost

    o = iv.InvertOptions(A_max_factor=10.0)
    a = np.linspace(-1e4, 1e4, 2001)
    d = np.asarray(cost.log_A_departure(a, o))
    assert np.all(np.abs(d) <= np.log(10.0)) and np.all(np.diff(d) >= 0)
    assert float(cost.log_A_departure(1e-3, o)) == pytest.approx(o.A_step * 1e-3, rel=1e-6)
    for r in (-2.0, 0.0, 0.5, 2.2):
        assert float(cost.log_A_departure(cost.A_control(r, o), o)) == pytest.approx(r)
    free = iv.InvertOptions(A_max_factor=0.0)
    assert float(cost.log_A_departure(300.0, free)) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="A_max_factor"):
        iv.InvertOptions(A_max_factor=0.5)


def test_an_A_at_its_bound_is_reported(twin_data):
    """An A within 5 % (in ln) of a bound is a warning naming the bound and the key; so is an
    unbounded A with an implausible strain rate; a plausible A inside the bounds is none."""
    prior = twin_data.physics.A
    inv = iv.Inverter(twin_data, iv.InvertOptions())
    assert inv.bound_warnings(prior) == [] and inv.bound_warnings(3 * prior) == []
    (low,) = inv.bound_warnings(prior / 9.99)
    assert "lower bound" in low and "invert.A_max_factor=10" in low
    assert "upper bound" in inv.bound_warnings(prior * 9.99)[0]
    field = np.full(twin_data.grid.shape, prior)
    field[twin_data.mask > 0] = prior / 10
    assert "on 100% of the glacier" in inv.bound_warnings(field)[0]
    free = iv.Inverter(twin_data, iv.InvertOptions(A_max_factor=0.0))
    assert free.bound_warnings(prior / 100) == []
    assert "implausible" in free.bound_warnings(4.7e-37)[0]


def test_a_thickness_change_field_sets_the_target_and_the_balance(twin_data):
    """A glacier's dhdt(y, x) is the change the relaxed surface should show where known
    (``invert.dhdt`` elsewhere), and the apparent mass balance is shifted to its glacier-wide
    mean: no ice leaves through the outline, so the mean balance is the mean thinning."""
    import jax.numpy as jnp

    mask = twin_data.mask > 0
    dhdt = np.where(mask, -1.0, np.nan)
    dhdt[np.nonzero(mask)[0][:10], np.nonzero(mask)[1][:10]] = np.nan
    data = dataclasses.replace(twin_data, dhdt=dhdt)
    inv = iv.Inverter(data, iv.InvertOptions(dhdt=-0.25))
    field = np.asarray(inv.consts["dhdt"])
    np.testing.assert_array_equal(field, np.where(np.isfinite(dhdt), -1.0, -0.25))
    b = np.asarray(inv.consts["smb"](jnp.asarray(data.surface)))
    assert b[mask].mean() == pytest.approx(field[mask].mean())
    plain = iv.Inverter(twin_data, iv.InvertOptions())
    b0 = np.asarray(plain.consts["smb"](jnp.asarray(data.surface)))
    assert abs(b0[mask].mean()) < 1e-12


@pytest.fixture(scope="module")
def sliding_twin():
    return experiments.twin_inversion(sliding=1.0)


def sliding_share(twin) -> float:
    """Sliding's share of the true glacier's summed surface speed."""
    import jax.numpy as jnp

    from glacier import solver as slv

    ph = twin.physics
    H, bed = jnp.asarray(twin.thickness_true), jnp.asarray(twin.domain.bed)
    speed = [np.asarray(slv.surface_speed(H, bed, laws.GlenLaw(
        A=ph.A, fs=fs, n=ph.n, rho=ph.rho, g=ph.g), twin.domain.grid))
        for fs in (jnp.asarray(twin.fs_true), 0.0)]
    m = twin.domain.mask > 0
    return float(np.sum((speed[0] - speed[1])[m]) / np.sum(speed[0][m]))


def test_a_sliding_twin_keeps_A_and_finds_the_sliding(sliding_twin):
    """The truth slides over its lower half (17 % of the speed); the inversion starts from no
    sliding to speak of (fs = 0.01 invert.fs) and the true A. With a sliding field the
    inversion keeps A within 20 % of the truth and puts about the true share of the speed
    into sliding, more down-glacier than at the head (the same inversion without the
    sliding control raises A 1.6-fold: test_without_a_sliding_control_A_absorbs_it)."""
    tw = sliding_twin
    data = iv.InversionData.from_domain(tw.domain, tw.physics)
    res = iv.invert(data, iv.InvertOptions(sliding="field"))
    assert 1 / 1.2 < res.A / tw.physics.A < 1.2
    true_share = sliding_share(tw)
    assert 0.1 < true_share < 0.3
    assert 0.6 * true_share < res.sliding_fraction < 1.6 * true_share
    m = tw.domain.mask > 0
    rows = np.flatnonzero(m.any(axis=1))
    half = (rows[0] + rows[-1]) // 2
    head, snout = res.fs[:half][m[:half]].mean(), res.fs[half:][m[half:]].mean()
    assert snout > 2 * head and np.all(res.fs >= 0) and np.all(res.fs[~m] == 0)
    err = rel_rmse(res.thickness, tw)
    H_base, _ = iv.baseline(data, data.obs_count)
    assert err <= 0.13 and err < 0.5 * rel_rmse(H_base, tw)
    assert res.warnings == [] and {"smooth_sliding", "prior_sliding"} <= set(res.history)
    # terms of the final stage only (not of the warm-up) are NaN there: one length for all
    n = len(res.history["total"])
    assert all(len(v) == n for v in res.history.values())
    assert np.isnan(res.history["prior_sliding"][0]) and np.isfinite(res.history["obs"][0])


@pytest.mark.slow  # ~60 s
def test_without_a_sliding_control_A_absorbs_it(sliding_twin):
    tw = sliding_twin
    res = iv.invert(iv.InversionData.from_domain(tw.domain, tw.physics), iv.InvertOptions())
    assert res.A / tw.physics.A > 1.4 and res.fs is None and res.sliding_fraction == 0.0


def test_sliding_stays_non_negative_and_bounded():
    """fs / fs_ref = R sigmoid(sliding_step c + logit(0.01 / R)): in (0, R) for any control,
    0.01 at c = 0, ln-like below the bound, and ``sliding_control`` its inverse; an fs near
    the bound is a warning naming the keys."""
    from glacier.invert import cost

    o = iv.InvertOptions(sliding="field", fs_max_factor=10.0)
    c = np.linspace(-200, 200, 2001)
    f = np.asarray(cost.sliding_factor(c, o))
    assert np.all(f >= 0) and np.all(f <= 10.0) and np.all(np.diff(f) >= 0)
    assert float(cost.sliding_factor(0.0, o)) == pytest.approx(cost.FS_START)
    assert float(cost.sliding_factor(1.0, o) / cost.sliding_factor(0.0, o)) == pytest.approx(
        np.e, rel=0.01)
    for r in (1e-4, 0.01, 0.5, 3.0, 9.0):
        assert float(cost.sliding_factor(cost.sliding_control(r, o), o)) == pytest.approx(r)
    for bad, words in [(dict(fs_max_factor=1.0), "fs_max_factor"), (dict(fs=0.0), "fs=0"),
                       (dict(sliding="fields"), "none, scalar or field"),
                       (dict(sliding="field", A="law"), "sliding=none")]:
        with pytest.raises(ValueError, match=words):
            iv.InvertOptions(**bad)
    twin = experiments.twin_inversion(nx=9, ny=13, years=20.0)
    inv = iv.Inverter(iv.InversionData.from_domain(twin.domain), o)
    assert inv.sliding_warnings(np.full(inv.data.grid.shape, 0.5 * o.fs)) == []
    (top,) = inv.sliding_warnings(np.full(inv.data.grid.shape, 9.9 * o.fs))
    assert "upper bound" in top and "invert.fs_max_factor=10" in top


def test_the_surface_misfit_over_elevation_bands(small_data):
    """invert.surface_bands=W: the relaxed surface's misfit is averaged over W-metre bands of
    the observed surface and each band's mean squared, weighted by its area: the bands
    partition the glacier, and the banded term is at most the cell-by-cell one (the square
    of a mean is at most the mean of the squares)."""
    from glacier.invert import cost
    from glacier.invert.loop import elevation_bands

    S, mask = small_data.surface, small_data.mask
    bands = elevation_bands(S, mask, 50.0)
    assert np.array_equal(bands.sum(axis=0), (mask > 0).astype(float))  # a partition
    assert bands.shape[0] == int((S[mask > 0].max() - S[mask > 0].min()) // 50.0) + 1
    opts = iv.InvertOptions(surface_bands=50.0, relax_years=1.0, iterations=1)
    inv = iv.Inverter(small_data, opts)
    p = inv.init_params(inv.data.mask * 50.0)
    w = np.asarray(small_data.obs_count)
    banded = float(cost.cost_terms(p, w, inv.consts, inv.static)[1][0]["surface"])
    plain_inv = iv.Inverter(small_data, dataclasses.replace(opts, surface_bands=0.0))
    plain = float(cost.cost_terms(p, w, plain_inv.consts, plain_inv.static)[1][0]["surface"])
    assert 0 < banded <= plain


def test_contours_are_round_elevations_and_nest():
    """``contour_regions``: the multiples of the interval between the lowest and highest
    glacier cell, each region the glacier cells at or above its contour, nested downwards."""
    from glacier.invert.loop import contour_regions

    S = np.array([[2004.0, 2011.0, 2026.0], [2030.0, 2041.0, 3000.0]])
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    above = contour_regions(S, mask, 10.0)  # contours 2010, 2020, 2030, 2040 m
    assert above.shape == (4, 2, 3)
    np.testing.assert_array_equal(above.sum(axis=(1, 2)), [4, 3, 2, 1])
    assert np.all(above[1:] <= above[:-1]) and above[:, 1, 2].max() == 0  # off the mask
    assert contour_regions(S, mask, 0.0).shape == (1, 2, 3)
    assert not contour_regions(S, mask, 0.0).any()


def test_the_balance_term_asks_every_contour_for_the_balance_flux(twin, twin_data):
    """invert.balance_error: on the steady twin the true thickness carries the balance flux
    through every contour (J_balance at sigma_b = 0.1 m a-1: 0.09, i.e. 0.03 m a-1 of
    glacier-wide balance: the flux of the steady state), 10 % more ice everywhere carries
    1.1^5 = 1.6 times it (J 6.4). Measured without a relaxation run, from A 3x too large:
    the term alone takes the thickness error from 23 % (lines and smoothness) to 16 %, A to
    1.3x the truth, the flux through the equilibrium contour to within 1 % of the balance
    flux, and half the apparent mass balance is explained band by band (0.51)."""
    from glacier.invert import cost

    opts = iv.InvertOptions(balance_error=0.1, relax_years=0.0, cv_folds=0)
    inv = iv.Inverter(twin_data, opts)
    w = np.asarray(twin_data.obs_count)

    def J(H):
        terms = cost.cost_terms(inv.init_params(H), w, inv.consts, inv.static)[1][0]
        return float(terms["balance"])

    assert J(twin.thickness_true) < 0.3
    assert J(1.1 * twin.thickness_true) > 20 * J(twin.thickness_true)
    A_true = float(twin_data.physics.A)
    res = iv.invert(twin_data, opts, A_init=3.0 * A_true)
    free = iv.invert(twin_data, dataclasses.replace(opts, balance_error=0.0),
                     A_init=3.0 * A_true)
    assert rel_rmse(res.thickness, twin) < 0.8 * rel_rmse(free.thickness, twin)
    assert 1 / 1.5 < res.A / A_true < 1.5
    assert abs(res.balance.flux_ratio - 1.0) < 0.05
    assert res.balance.band_explained > 0.3
