"""Time-stepping schemes of the SIA, one value object per scheme.

A scheme is a frozen dataclass whose fields are its options; ``make_step`` closes over the
static choices and the fields of one glacier and returns ``step(state, t_target) -> state``,
which advances by one step of at most ``t_target - state.t`` (the last step of a save interval
lands exactly on it). The time loop around it, what is saved and how it is differentiated are
the solver's (``glacier.solver``): a new scheme is one new class here.

State and status codes live here too, since every scheme reads and writes them.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from . import implicit
from .grid import Grid
from .physics import mass_balance, sia

STATUS_OK = 0
STATUS_NONFINITE = 1
STATUS_MAX_STEPS = 2
STATUS_NEWTON = 3
STATUS_NAMES = {STATUS_OK: "ok", STATUS_NONFINITE: "non-finite thickness",
                STATUS_MAX_STEPS: "step budget exhausted",
                STATUS_NEWTON: "the implicit step did not converge"}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class State:
    """What the time loop carries from step to step.

    Attributes:
        t: time [a] (float64 when x64 is on).
        H: thickness [m], (ny, nx).
        steps: steps taken in the current save interval.
        smb_volume: cumulative applied mass balance [m^3].
        outflow_volume: cumulative volume lost through the edges and ice-free cells [m^3].
        status: ``STATUS_OK`` or the first failure.
        iterations: nonlinear (Newton) iterations in the current save interval (0: explicit).
        residual: largest final nonlinear residual of the interval's steps [m] (0: explicit).
    """

    t: jax.Array
    H: jax.Array
    steps: jax.Array
    smb_volume: jax.Array
    outflow_volume: jax.Array
    status: jax.Array
    iterations: jax.Array
    residual: jax.Array


Step = Callable[[State, jax.Array], State]


class Scheme(abc.ABC):
    """A time-stepping scheme: abstract; concrete schemes are final frozen dataclasses.

    Every scheme has a step budget ``max_steps`` per save interval: exceeding it stops the run
    with ``STATUS_MAX_STEPS``, and bounded loops (``solver.Checkpointed``, ``solver.StoreAll``)
    run exactly that many (masked) steps.
    """

    max_steps: int

    @abc.abstractmethod
    def make_step(self, bed, rheology, smb, grid: Grid, ice_free) -> Step:
        """``step(state, t_target)`` for one glacier (all arguments closed over)."""

    def with_budget(self, max_steps: int) -> Scheme:
        """The same scheme with another step budget."""
        return dataclasses.replace(self, max_steps=int(max_steps))


@dataclasses.dataclass(frozen=True)
class ExplicitMUSCL(Scheme):
    """Adaptive forward Euler of the flux-form SIA with MUSCL-superbee face thickness.

    Each step (``physics.sia``):

    1. fluxes with the upstream MUSCL diffusivity and the positivity-preserving limiter;
    2. H* = H - dt div q (never negative: no cell exports more than it holds);
    3. the mass balance on the surface at the start of the step, clipped so that ablation
       removes at most the ice present: H** = max(H* + dt b, 0);
    4. cells marked ``ice_free`` are emptied (what flowed in counts as outflow).

    dt = min(cfl dx^2 / max(D), max_dt), shortened to land on the save time.

    Args:
        cfl: stability factor, in (0, 0.25] (linear diffusion is stable up to 0.25 on a
            square grid; the nonlinear SIA needs a margin below that).
        max_dt: largest step [a] (also the step on ice-free domains).
        max_steps: step budget per save interval.
        custom_vjp: reverse-mode derivative of the face states by the hand-derived adjoint
            (``physics.faces_adjoint``); False for JAX's AD (forward mode, Hessians).
    """

    cfl: float = 0.124
    max_dt: float = 1.0
    max_steps: int = 10_000_000
    custom_vjp: bool = True

    def __post_init__(self):
        if not 0 < self.cfl <= 0.25:
            raise ValueError(f"cfl must be in (0, 0.25], got {self.cfl}.")
        if not self.max_dt > 0:
            raise ValueError(f"max_dt must be positive, got {self.max_dt}.")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}.")

    def make_step(self, bed, rheology, smb, grid: Grid, ice_free) -> Step:
        dx = grid.dx
        cell_area = grid.cell_area
        cfl, max_dt, custom_vjp = self.cfl, self.max_dt, self.custom_vjp
        b_fixed = mass_balance.fixed_field(smb, bed)  # None: it depends on the surface

        def step(state: State, t_target) -> State:
            t = state.t
            # H's later uses take it from the fluxes (``through``): their cotangents are then
            # added in the face adjoint's kernel (``native.fluxes_native``).
            qx, qy, D_max, H = sia.fluxes(state.H, bed, rheology, grid, custom_vjp=custom_vjp,
                                          through=True)
            S = bed + H
            dt_stable = sia.stable_dt(D_max, dx, cfl, max_dt).astype(t.dtype)
            remaining = t_target - t
            last = dt_stable >= remaining
            dt = jnp.where(last, remaining, dt_stable)
            dt_h = dt.astype(H.dtype)
            b = smb(S, t) if b_fixed is None else b_fixed
            H_new, applied, removed, edge = sia.limited_step_end(
                H, qx, qy, dt_h, b, ice_free, grid, custom_vjp=custom_vjp)
            applied = applied * cell_area
            outflow = dt_h * dx * edge
            if ice_free is not None:
                outflow = outflow + removed * cell_area
            finite = jnp.isfinite(D_max) & jnp.isfinite(dt)
            return State(
                t=jnp.where(last, t_target, t + dt),
                H=H_new,
                steps=state.steps + 1,
                smb_volume=state.smb_volume + applied,
                outflow_volume=state.outflow_volume + outflow,
                status=jnp.where(finite, state.status, STATUS_NONFINITE),
                iterations=state.iterations,
                residual=state.residual,
            )

        return step


@dataclasses.dataclass(frozen=True)
class ImplicitEuler(Scheme):
    """Backward Euler of the flux-form SIA with H >= 0 as a complementarity condition.

    Each step solves r(H) = H - H_old + dt (div q(H) - b(B + H, t + dt)) = 0 where ice remains
    and H = 0 where the ablation exceeds the ice (``glacier.implicit``) by semismooth Newton
    with multigrid-preconditioned GMRES, and is differentiated by the implicit function
    theorem (one transposed linear solve per step; reverse mode never goes through Newton).
    The face thickness is the explicit scheme's MUSCL-superbee one.

    Time steps: ``dt``, shortened to land exactly on the save times; a step whose Newton
    iteration does not converge is retried with half the step, up to ``max_halvings`` times,
    and then the run stops with ``STATUS_NEWTON``, the time and the residual.

    Args:
        dt: the step [a] (the largest, when halved).
        max_steps: step budget per save interval.
        tol: Newton tolerance: max |Phi| <= tol (max H_old + 1 m) [-] (at least 100 machine
            epsilons).
        max_newton: Newton iterations per attempt.
        krylov_rtol: relative tolerance of each Newton system (inexact Newton).
        restart, max_krylov: GMRES Krylov dimension and products per Newton system.
        adjoint_rtol: relative tolerance of the transposed solve of the gradient.
        max_halvings: step halvings before a step fails.
        preconditioner: "multigrid" (default), "jacobi" or "none" (for measurements).
    """

    dt: float = 1.0
    max_steps: int = 100_000
    tol: float = 1e-8
    max_newton: int = 30
    krylov_rtol: float = 1e-3
    restart: int = 30
    max_krylov: int = 200
    adjoint_rtol: float = 1e-9
    max_halvings: int = 4
    preconditioner: str = "multigrid"

    def __post_init__(self):
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f"dt must be a positive number of years, got {self.dt}.")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}.")
        if not 0 < self.tol < 1:
            raise ValueError(f"tol must be in (0, 1), got {self.tol}.")
        if not 0 < self.krylov_rtol < 1 or not 0 < self.adjoint_rtol < 1:
            raise ValueError("krylov_rtol and adjoint_rtol must be in (0, 1).")
        if min(self.max_newton, self.restart, self.max_krylov) < 1 or self.max_halvings < 0:
            raise ValueError("max_newton, restart and max_krylov must be >= 1 and "
                             "max_halvings >= 0.")
        if self.preconditioner not in ("multigrid", "jacobi", "none"):
            raise ValueError("preconditioner must be multigrid, jacobi or none, got "
                             f"{self.preconditioner!r}.")

    @property
    def newton_options(self) -> implicit.NewtonOptions:
        """The solver options of ``glacier.implicit`` (the fields of the same names)."""
        return implicit.NewtonOptions(**{f.name: getattr(self, f.name)
                                         for f in dataclasses.fields(implicit.NewtonOptions)})

    def steps_for(self, interval: float) -> int:
        """Steps of one save interval of ``interval`` years without halvings."""
        return max(1, math.ceil(interval / self.dt - 1e-9))

    def make_step(self, bed, rheology, smb, grid: Grid, ice_free) -> Step:
        opts = self.newton_options
        p = implicit.Params(bed=bed, rheology=rheology, smb=smb)
        dt_max = self.dt

        def step(state: State, t_target) -> State:
            H_old, t = state.H, state.t
            fixed = jnp.zeros_like(H_old) if ice_free is None else ice_free
            remaining = t_target - t
            # Land on the save time; a last step shorter than 1e-6 dt is merged into this one.
            dt = jnp.where(remaining <= dt_max * (1 + 1e-6), remaining, dt_max)
            res = implicit.solve(H_old, t, dt, p, fixed, grid, opts)
            hdt = H_old.dtype
            t_new, dt_h = (t + res.dt).astype(hdt), res.dt.astype(hdt)
            H_new = implicit.attach(grid, opts, res.H, H_old, t_new, dt_h, p, fixed)
            applied, outflow = implicit.budget(lax.stop_gradient(H_new), H_old, t_new, dt_h, p,
                                               fixed, grid)
            ok = res.converged
            last = res.dt >= remaining
            return State(
                t=jnp.where(ok, jnp.where(last, t_target, t + res.dt), t),
                H=jnp.where(ok, H_new, H_old),
                steps=state.steps + 1,
                smb_volume=state.smb_volume + jnp.where(ok, applied, 0.0),
                outflow_volume=state.outflow_volume + jnp.where(ok, outflow, 0.0),
                status=jnp.where(ok, state.status, STATUS_NEWTON),
                iterations=state.iterations + res.iterations,
                residual=jnp.maximum(state.residual, res.residual.astype(state.residual.dtype)),
            )

        return step


def rkl2_stages(ratio, max_stages: int):
    """Fewest RKL2 stages s >= 2 whose super-step reaches ``ratio`` forward-Euler steps:
    (s^2 + s - 2) / 4 >= ratio, capped at ``max_stages`` (works on arrays)."""
    s = jnp.ceil(0.5 * (jnp.sqrt(9.0 + 16.0 * jnp.maximum(ratio, 0.0)) - 1.0) - 1e-9)
    return jnp.clip(s, 2, max_stages)


def rkl2_reach(s):
    """Super-step of s RKL2 stages in forward-Euler steps: (s^2 + s - 2) / 4."""
    return 0.25 * (s * s + s - 2.0)


@dataclasses.dataclass(frozen=True)
class ExplicitRKL2(Scheme):
    """Super-time-stepping: the explicit scheme's flux operator in Runge-Kutta-Legendre stages.

    The second-order RKL2 method of Meyer, Balsara & Aslam (2014, J. Comput. Phys. 257,
    Eqs. 16-19) takes one super-step tau with s stages, each one evaluation of the explicit
    scheme's fluxes (MUSCL-superbee faces), and is stable for tau <= (s^2 + s - 2)/4 dt_FE,
    where dt_FE = cfl dx^2 / max(D) is the forward-Euler limit: s evaluations buy about s^2/4
    explicit steps, so the saving grows as 1/dx. Per super-step (Strang splitting):

    1. half the mass balance on the surface at the start, clipped at the ice present;
    2. the flow super-step with s = the fewest stages that reach min(max_dt, time to the
       save) (at most ``max_stages``, and then tau is what they reach). Stages see the
       thickness clipped at zero, and each stage's fluxes are limited so that no cell exports
       more than it holds in 2 w1 tau (w1 = 4 / (s^2 + s - 2)); the flux form moves ice only
       between cells and out of the edges. What the stages leave below zero is set to zero
       and booked with the outflow (it is what the flow removed from the domain, negative
       here), so the budget closes to round-off;
    3. the other half of the mass balance on the new surface, at the end time;
    4. cells marked ``ice_free`` are emptied (booked as outflow).

    The step size is then set by accuracy (``max_dt``), not by stability, and differentiation
    is that of the explicit scheme (checkpointed reverse mode through the stages).

    Args:
        cfl: forward-Euler stability factor of one stage, in (0, 0.25].
        max_dt: largest super-step [a]: the accuracy control.
        max_stages: most stages per super-step (a static bound of the stage loop).
        max_steps: super-step budget per save interval.
        custom_vjp: as ``ExplicitMUSCL``.
    """

    cfl: float = 0.124
    max_dt: float = 1.0
    max_stages: int = 64
    max_retries: int = 3
    max_steps: int = 10_000_000
    custom_vjp: bool = True

    def __post_init__(self):
        if not 0 < self.cfl <= 0.25:
            raise ValueError(f"cfl must be in (0, 0.25], got {self.cfl}.")
        if not (self.max_dt > 0 and math.isfinite(self.max_dt)):
            raise ValueError(f"max_dt must be a positive number of years, got {self.max_dt}.")
        if not 2 <= self.max_stages <= 1000:
            raise ValueError(f"max_stages must be in [2, 1000], got {self.max_stages}.")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}.")

    def make_step(self, bed, rheology, smb, grid: Grid, ice_free) -> Step:
        dx, cell_area = grid.dx, grid.cell_area
        cfl, max_dt, max_stages, custom_vjp = (self.cfl, self.max_dt, self.max_stages,
                                               self.custom_vjp)

        keep = jnp.ones_like(bed) if ice_free is None else 1.0 - ice_free

        def flow(Y, dt_limit, rheology, bed, keep):
            # The stages see no negative ice, and no ice in the held cells (sinks, as the
            # explicit scheme's every-step emptying makes them).
            Hc = jnp.maximum(Y, 0.0) * keep
            # ``through``: the limiter's cotangent of Hc is added in the face adjoint's kernel
            qx, qy, D_max, Hc = sia.fluxes(Hc, bed, rheology, grid, custom_vjp=custom_vjp,
                                           through=True)
            div, _ = sia.limited_divergence(Hc, qx, qy, dt_limit, grid,
                                            custom_vjp=custom_vjp)
            return -div, D_max

        def half_smb(H, t, dt):
            H_new = jnp.maximum(H + dt * smb(bed + H, t), 0.0)
            return H_new, jnp.sum(H_new - H) * cell_area

        def b(j):
            return jnp.where(j <= 2, 1.0 / 3.0, (j * j + j - 2.0) / (2.0 * j * (j + 1.0)))

        def coefficients(j, w1):
            jf = jnp.asarray(j).astype(w1.dtype)
            mu = (2.0 * jf - 1.0) / jf * b(jf) / b(jf - 1.0)
            nu = -(jf - 1.0) / jf * b(jf) / b(jf - 2.0)
            mu_t = mu * w1
            return mu, nu, mu_t, -(1.0 - b(jf - 1.0)) * mu_t

        def stages(Y0, tau, s, args, loop):
            """RKL2 flow over tau in s stages: (Y_s, largest face D seen by the stages).
            ``loop(body, carry)`` runs ``body(j, carry)`` for j = 2..s."""
            w1 = 4.0 / (s * s + s - 2.0)
            limit = 2.0 * w1 * tau
            M0, D0 = flow(Y0, limit, *args)
            Y1 = Y0 + (w1 / 3.0) * tau * M0

            def stage(j, c):
                Ym1, Ym2, D_seen = c
                mu, nu, mu_t, gamma_t = coefficients(j, w1)
                M, D = flow(Ym1, limit, *args)
                Yj = (mu * Ym1 + nu * Ym2 + (1.0 - mu - nu) * Y0
                      + tau * (mu_t * M + gamma_t * M0))
                return Yj, Ym1, jnp.maximum(D_seen, D)

            Ys, _, D_seen = loop(stage, (Y1, Y0, D0))
            return Ys, D_seen

        def fast(Y0, tau, s, args):
            # Exactly s - 1 stages (a while loop: forward only), two per iteration: a loop
            # that hands Y_j, Y_j-1 on as the next iteration's Y_j-1, Y_j-2 makes XLA copy
            # three fields per stage (7 of a 60 us stage on the valley), where in two stages
            # each new field can take the place of the one it no longer needs; an odd last
            # stage after the loop. (The same operations as one stage per iteration: the
            # values are those bit for bit. Under vmap the cond computes the last stage for
            # every glacier, as the loop's masked trips do for those with fewer stages.)
            n = s.astype(jnp.int32)

            def loop(body, c):
                c = lax.fori_loop(0, (n - 1) // 2,
                                  lambda i, c: body(2 * i + 3, body(2 * i + 2, c)), c)
                return lax.cond((n - 1) % 2 == 1, lambda c: body(n, c), lambda c: c, c)

            return stages(Y0, tau, s, args, loop)

        @jax.custom_vjp
        def attach(Ys, Y0, tau, s, args):
            """``Ys`` (the super-step of Y0 found by the forward-only attempts) with the
            derivative of ``fast(Y0, tau, s, args)`` (as ``implicit.attach`` does for Newton)."""
            return Ys

        def attach_fwd(Ys, Y0, tau, s, args):
            return Ys, (Y0, tau, s, args)

        def attach_bwd(res, ct):
            return (jnp.zeros_like(ct), *superstep_bwd(res, (ct,)))

        def superstep_bwd(res, ct):
            # The hand-written adjoint of the stage recurrence: the forward pass stores only
            # the start of the super-step; here the stages are recomputed into a buffer, then
            # walked back from s to 2, differentiating each stage's fluxes once (tau and s
            # are the step's choices, held fixed as the explicit scheme's dt is not).
            Y0, tau, s, args = res
            n = s.astype(jnp.int32)
            w1 = 4.0 / (s * s + s - 2.0)
            limit = 2.0 * w1 * tau

            def F(Y, args):
                return flow(Y, limit, *args)[0]

            M0, vjp0 = jax.vjp(F, Y0, args)
            Y1 = Y0 + (w1 / 3.0) * tau * M0
            buf = jnp.zeros((max_stages + 1, *Y0.shape), Y0.dtype).at[0].set(Y0).at[1].set(Y1)

            def forward(j, buf):
                mu, nu, mu_t, gamma_t = coefficients(j, w1)
                Ym1, Ym2 = buf[j - 1], buf[j - 2]
                Yj = (mu * Ym1 + nu * Ym2 + (1.0 - mu - nu) * Y0
                      + tau * (mu_t * F(Ym1, args) + gamma_t * M0))
                return buf.at[j].set(Yj)

            buf = lax.fori_loop(2, n + 1, forward, buf)

            def backward(k, c):
                # j = n, ..., 2; c = (bar Y_j, bar Y_{j-1} so far, bar Y0, bar M0, bar args,
                # Y_{j-1}). Y_{j-1} comes in the carry, sliced from the buffer by the step
                # before: a slice of the buffer inside the step's elementwise fusion makes XLA
                # count the whole buffer and split that fusion over two cores, which costs
                # more than the fusion itself on small grids.
                j = n - k
                bj, bjm1, bY0, bM0, bargs, Yjm1 = c
                mu, nu, mu_t, gamma_t = coefficients(j, w1)
                _, vjp = jax.vjp(F, Yjm1, args)
                gY, gargs = vjp(tau * mu_t * bj)
                return (bjm1 + mu * bj + gY, nu * bj, bY0 + (1.0 - mu - nu) * bj,
                        bM0 + tau * gamma_t * bj, jax.tree_util.tree_map(jnp.add, bargs, gargs),
                        buf[jnp.maximum(j - 2, 0)])

            zero = jnp.zeros_like(Y0)
            init = (ct[0], zero, zero, zero, jax.tree_util.tree_map(jnp.zeros_like, args),
                    buf[n - 1])
            b1, b0, bY0, bM0, bargs, _ = lax.fori_loop(0, n - 1, backward, init)
            # Y1 = Y0 + (w1/3) tau M0, M0 = F(Y0); b0: what reached Y_0 as Y_{j-2} of j = 2
            bM0 = bM0 + (w1 / 3.0) * tau * b1
            gY0, gargs = vjp0(bM0)
            bargs = jax.tree_util.tree_map(jnp.add, bargs, gargs)
            return bY0 + b0 + b1 + gY0, jnp.zeros_like(tau), jnp.zeros_like(s), bargs

        attach.defvjp(attach_fwd, attach_bwd)
        args = (rheology, bed, keep)

        def step(state: State, t_target) -> State:
            H0, t = state.H, state.t
            hdt = H0.dtype
            remaining = t_target - t
            wanted = jnp.minimum(max_dt, remaining)
            _, _, D_start = sia.fluxes(H0, bed, rheology, grid, custom_vjp=custom_vjp)

            # The attempts run forward only (a while loop on stop-gradient values: under vmap
            # it stops when every glacier has accepted); the accepted super-step is then
            # attached to its derivative, so reverse mode differentiates it once.
            H0_c, args_c, t_c = lax.stop_gradient((H0, args, t))
            D_start_c = lax.stop_gradient(D_start)
            dt_explicit = sia.stable_dt(D_start_c, dx, cfl, jnp.inf).astype(t.dtype)

            def attempt(c):
                k, _, D_est, wanted, _, _ = c
                final = k == self.max_retries
                # The last attempt is the explicit scheme's step (forward-Euler-sized at the D
                # of the start), taken as it is: never a rejected state.
                wanted = jnp.where(final, jnp.minimum(wanted, dt_explicit), wanted)
                dt_fe = jnp.where(final, dt_explicit,
                                  sia.stable_dt(D_est, dx, cfl, jnp.inf).astype(t.dtype))
                s = rkl2_stages(wanted / dt_fe, max_stages)
                tau = jnp.minimum(wanted, rkl2_reach(s) * dt_fe)
                Y0, _ = half_smb(H0_c, t_c.astype(hdt), 0.5 * tau.astype(hdt))
                Ys, D_seen = fast(Y0, tau.astype(hdt), s.astype(hdt), args_c)
                # Accept when the stages stayed within the stability margin of the D the
                # stage count assumed and left (almost) nothing below zero; else retry with
                # half the step and the largest D seen, grown by at most the margin squared
                # (the D of a rejected attempt may be that of an instability).
                negative = jnp.sum(jnp.maximum(-Ys, 0.0))
                ok = final | ((D_seen <= D_est * (0.25 / cfl)) & (
                    negative <= 1e-6 * jnp.sum(jnp.maximum(Ys, 0.0)) + 1e-12))
                D_next = jnp.clip(D_seen, D_est, D_est * (0.25 / cfl) ** 2)
                return (k + 1, ok, D_next, jnp.where(ok, wanted, 0.5 * tau),
                        (tau, s), Ys)

            init = (jnp.zeros((), jnp.int32), jnp.asarray(False), D_start_c, wanted,
                    (jnp.zeros_like(wanted), jnp.zeros_like(wanted)), H0_c)
            _, _, _, _, (tau, s), Ys = lax.while_loop(lambda c: ~c[1], attempt, init)
            tau, s = lax.stop_gradient((tau, s))
            Y0, applied1 = half_smb(H0, t.astype(hdt), 0.5 * tau.astype(hdt))
            Ys = attach(Ys, Y0, tau.astype(hdt), s.astype(hdt), args)
            last = tau >= remaining
            tau_h = tau.astype(hdt)
            H_flow = jnp.maximum(Ys, 0.0)
            t_end = jnp.where(last, t_target, t + tau)
            H_new, applied2 = half_smb(H_flow, t_end.astype(hdt), 0.5 * tau_h)
            # Flux form: Y0 - H_flow is what left through the edges (and the clip's remainder).
            outflow = jnp.sum(Y0 - H_flow) * cell_area
            if ice_free is not None:
                removed = H_new * ice_free
                H_new = H_new - removed
                outflow = outflow + jnp.sum(removed) * cell_area
            finite = jnp.isfinite(D_start) & jnp.isfinite(tau) & jnp.all(jnp.isfinite(H_new))
            return State(
                t=t_end,
                H=H_new,
                steps=state.steps + 1,
                smb_volume=state.smb_volume + applied1 + applied2,
                outflow_volume=state.outflow_volume + outflow,
                status=jnp.where(finite, state.status, STATUS_NONFINITE),
                iterations=state.iterations,
                residual=state.residual,
            )

        return step


SCHEMES: dict[str, type[Scheme]] = {"explicit": ExplicitMUSCL, "implicit": ImplicitEuler,
                                    "rkl2": ExplicitRKL2}
"""``solver.scheme`` name -> scheme class."""


def scheme_name(scheme: Scheme) -> str:
    """The ``solver.scheme`` name of a scheme object."""
    for name, cls in SCHEMES.items():
        if type(scheme) is cls:
            return name
    raise TypeError(f"not a known scheme: {scheme!r}")


def make_scheme(name: str, *, cfl: float = 0.124, max_dt: float = 1.0, dt: float = 1.0,
                max_steps: int | None = None) -> Scheme:
    """The scheme of ``solver.scheme=name``: explicit or rkl2 (``cfl``, ``max_dt``) or
    implicit (``dt``); ValueError (with what to set) on a bad name or value."""
    if name not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {name!r}.")
    budget = {} if max_steps is None else {"max_steps": int(max_steps)}
    if name == "explicit":
        return ExplicitMUSCL(cfl=float(cfl), max_dt=float(max_dt), **budget)
    if name == "rkl2":
        return ExplicitRKL2(cfl=float(cfl), max_dt=float(max_dt), **budget)
    return ImplicitEuler(dt=float(dt), **budget)


def scheme_to_dict(scheme: Scheme) -> dict:
    """JSON-able description (checkpoint metadata): ``{"kind": name, **fields}``."""
    return {"kind": scheme_name(scheme), **dataclasses.asdict(scheme)}


def scheme_from_dict(d: dict) -> Scheme:
    """Inverse of ``scheme_to_dict``; a dict without ``kind`` is an explicit scheme (older
    checkpoints)."""
    d = dict(d)
    d.pop("checkpoint_every", None)
    return SCHEMES[d.pop("kind", "explicit")](**d)
