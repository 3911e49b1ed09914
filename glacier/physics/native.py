"""Native CPU kernels of the explicit SIA step (XLA FFI custom calls), built on first use.

``sia.fluxes`` spends most of an explicit step in two XLA fusions that build the MUSCL face
states, the cross slopes, the diffusivity and the flux of one direction each
(``scripts/profile_step.py``). ``sia_faces.cc`` holds

- the **face kernel**: for Glen's law with n = 3, A and sliding scalars or cell fields, in a
  closed outline or not (forward simulations, the benchmarks, training with A(T), inversions
  of A and sliding) the same
  quantities in one pass, each cell's limiters once, row bands in the first-level cache, XLA's
  intra-op threads from 32 768 cells;
- the **limiter kernel** (``sia.limited_divergence``, any law's fluxes): the outflow limiter,
  the flux divergence and the edge outflow. On one core it is no faster than XLA's fusion of
  them, but it keeps the step on one core where XLA would split its small fusions over two and
  move the step's arrays between their caches every step (README, "The native kernels");

``sia_update.cc`` holds the **step-end kernel** (``sia.step_end``): H - dt div q, the
clipped mass balance, the ice-free cells and the two volume sums in one pass, where XLA makes
four to six passes that each recompute the balance and two reductions (on the valley with
OGGM's ice-free ring, 93 -> 79 us per step).

They are

- **built on first use** with the C++ compiler (``$CXX``, else ``g++``, ``c++``) against the
  FFI headers that jaxlib ships, into ``$GLACIER_CACHE_DIR/native`` (default
  ``~/.cache/glacier/native``; ``GLACIER_CACHE_DIR=off``: a temporary folder), one library
  per source, compiler flags (``-march=native``; ``$GLACIER_NATIVE_MARCH`` to choose),
  jaxlib version and CPU, written atomically so that processes started together (test
  workers, sweep jobs) share it;
- **used only where they change nothing but the speed:** on the CPU backend with one device
  (sharded batches keep XLA's expressions, which the SPMD partitioner splits). The kernels
  agree with those expressions to round-off (``tests/numerics/test_native.py``: 1e-13
  relative in float64, 1e-5 in float32, periodic or not, batched);
- **differentiated by their adjoint kernels** (``sia_faces_adjoint.cc``,
  ``sia_limit_adjoint.cc``, the step end's in ``sia_update.cc``; ``with_native_vjp``): each
  call is a ``jax.custom_vjp`` whose residuals are its inputs and outputs and whose cotangent
  rule is a second custom call (in an explicit step the limiter and the step's end are one
  ``custom_vjp``, ``limited_step_end_native``, whose fused adjoint remakes div q row by row,
  so that reverse mode neither reruns the limiter kernel nor keeps div q), the
  hand-derived VJP with JAX's one-sided derivatives at every kink, so gradients equal those of
  the XLA expressions to round-off (``tests/numerics/test_native_adjoint.py``,
  ``test_native_limit_vjp.py``). ``GLACIER_NATIVE_VJP=0`` differentiates through the XLA
  expressions instead (``with_reference_vjp``: the kernels still give the values);
- **optional:** ``GLACIER_NATIVE=0`` turns them off, and without a compiler (or when the
  build fails, said once in a warning) the XLA expressions run instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SOURCES = tuple(Path(__file__).with_name(name) for name in
                ("sia_faces.cc", "sia_faces_adjoint.cc", "sia_limit_adjoint.cc", "sia_update.cc"))
"""The kernels' sources, compiled together into one library."""
HEADERS = (Path(__file__).with_name("sia_kernels.h"),)
"""What the sources include (part of the library's key)."""
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math")


def march() -> str:
    """The target of ``-march``: ``$GLACIER_NATIVE_MARCH`` (e.g. ``haswell`` to measure what an
    AVX2 machine gets), else ``native``."""
    return os.environ.get("GLACIER_NATIVE_MARCH", "").strip() or "native"


def _targets(kernel: str) -> dict:
    """The FFI target of ``kernel`` per dtype: ``glacier_sia_<kernel>_f64`` and ``_f32``."""
    return {np.dtype(f"float{bits}"): f"glacier_sia_{kernel}_f{bits}" for bits in (64, 32)}


TARGETS = _targets("faces")
LIMIT_TARGETS = _targets("limit")
FACES_VJP_TARGETS = _targets("faces_vjp")
LIMIT_VJP_TARGETS = _targets("limit_vjp")
UPDATE_TARGETS = _targets("update")
UPDATE_VJP_TARGETS = _targets("update_vjp")
LIMIT_UPDATE_VJP_TARGETS = _targets("limit_update_vjp")
_SYMBOLS = {target: "".join(word.capitalize() for word in target.split("_"))
            for kernel in (TARGETS, LIMIT_TARGETS, FACES_VJP_TARGETS, LIMIT_VJP_TARGETS,
                           UPDATE_TARGETS, UPDATE_VJP_TARGETS, LIMIT_UPDATE_VJP_TARGETS)
            for target in kernel.values()}
"""FFI target -> the handler's symbol in the library (glacier_sia_faces_f64 ->
GlacierSiaFacesF64)."""


def enabled_by_environment() -> bool:
    """False when ``GLACIER_NATIVE`` is 0, off, false or no."""
    return os.environ.get("GLACIER_NATIVE", "1").strip().lower() not in ("0", "off", "false", "no")


def _build_dir() -> Path:
    value = os.environ.get("GLACIER_CACHE_DIR")
    if value is not None and value.strip().lower() in ("", "off"):
        return Path(tempfile.gettempdir()) / f"glacier-native-{os.getuid()}"
    if value:
        return Path(value).expanduser() / "native"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "glacier" / "native"


def _cpu_signature() -> bytes:
    """The CPU's model and feature flags: a library built with -march=native on one machine
    of a cluster must not be loaded on a node with fewer instructions (shared home)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        return platform.processor().encode()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep))).encode()


def compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def build(directory: Path | None = None) -> Path:
    """Compile ``SOURCES`` into one library (once per sources, flags and jaxlib) and return it.

    Raises ``RuntimeError`` with the compiler's message when there is no compiler or it fails.
    """
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    source = b"".join(path.read_bytes() for path in (*SOURCES, *HEADERS))
    flags = (*FLAGS, f"-march={march()}")
    key = hashlib.sha256(source + " ".join(flags).encode() + cxx.encode()
                         + jax.__version__.encode() + _cpu_signature()).hexdigest()[:16]
    directory = Path(directory) if directory is not None else _build_dir()
    library = directory / f"sia_faces-{key}.so"
    if library.exists():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)
    command = [cxx, *flags, f"-I{jax.ffi.include_dir()}", *map(str, SOURCES), "-o", partial]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        os.replace(partial, library)  # atomic: a concurrent build writes the same file
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return library


def load() -> bool:
    """Build (if needed) and register the kernels with XLA; False when ``GLACIER_NATIVE=0``,
    or, with one warning, when they cannot be had (tried once per process)."""
    return enabled_by_environment() and _load_once()


@functools.cache
def _load_once() -> bool:
    try:
        lib = ctypes.cdll.LoadLibrary(str(build()))
        for target, symbol in _SYMBOLS.items():
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                        platform="cpu")
    except (RuntimeError, OSError, subprocess.SubprocessError, AttributeError) as err:
        warnings.warn(f"glacier: the native SIA kernel is not available ({err}); the XLA "
                      "expressions run instead (same results, slower on the CPU). "
                      "GLACIER_NATIVE=0 silences this.", RuntimeWarning, stacklevel=2)
        return False
    return True


def usable(H) -> bool:
    """Whether ``fluxes_native`` may run for ``H`` here: enabled, built, CPU backend with a
    single device, float32 or float64."""
    if not enabled_by_environment():
        return False
    if np.dtype(H.dtype) not in TARGETS:
        return False
    if jax.default_backend() != "cpu" or jax.device_count() != 1:
        return False
    return _load_once()


def _ffi(targets: dict, out, *args, aliases: dict | None = None, **attributes):
    """The kernel of ``targets`` for the dtype of ``args[0]``, on ``args``, with
    ``attributes`` (``aliases``: input index -> output index written in place)."""
    call = jax.ffi.ffi_call(targets[np.dtype(args[0].dtype)], out, vmap_method="broadcast_all",
                            input_output_aliases=aliases)
    return call(*args, **attributes)


def _grid(dx: float, periodic: tuple[bool, bool]) -> dict:
    """The grid's spacing and periodicity as kernel attributes."""
    return dict(dx=np.float64(dx), periodic_y=np.int64(bool(periodic[0])),
                periodic_x=np.int64(bool(periodic[1])))


def coef_fields(H, coef) -> bool:
    """Whether ``coef`` holds the law's coefficients as cell fields, (..., 3, ny, nx) for H
    (..., ny, nx): Gamma, fs (rho g)^n and an outline weight (``sia.glen3_coefficients``),
    rather than (..., 2)."""
    return jnp.ndim(coef) == jnp.ndim(H) + 1


def faces_call(H, bed, coef, *, dx: float, periodic: tuple[bool, bool]):
    """The FFI call: (qx, qy, D_max) for H, bed (..., ny, nx) and coef (..., 2) = (Gamma,
    fs (rho g)^n), or coef (..., 3, ny, nx): the two per cell and an outline weight (each face
    takes the mean of its two cells' coefficients, ``grid.cell_to_face``, times the product
    of their weights, ``grid.faces_within``)."""
    *lead, ny, nx = H.shape
    out = (jax.ShapeDtypeStruct((*lead, ny, nx + 1), H.dtype),
           jax.ShapeDtypeStruct((*lead, ny + 1, nx), H.dtype),
           jax.ShapeDtypeStruct(tuple(lead), H.dtype))
    return _ffi(TARGETS, out, H, bed, coef, coef_fields=np.int64(coef_fields(H, coef)),
                **_grid(dx, periodic))


def limit_call(H, qx, qy, dt, *, dx: float, periodic: tuple[bool, bool]):
    """The FFI call: (div q, edge outflow) of the outflow-limited fluxes (``sia.limit_outflow``,
    ``sia.flux_divergence``, ``sia.edge_outflow``) for H (..., ny, nx) and a step dt (...)."""
    *lead, ny, nx = H.shape
    out = (jax.ShapeDtypeStruct((*lead, ny, nx), H.dtype),
           jax.ShapeDtypeStruct(tuple(lead), H.dtype))
    return _ffi(LIMIT_TARGETS, out, H, qx, qy, dt, **_grid(dx, periodic))


def update_call(H, div, dt, b, ice_free=None, *, in_place: bool = False):
    """The FFI call of the step's end (``sia_update.cc``): (H_new, applied, removed) for H,
    div q, b (..., ny, nx), dt (...) and an optional 0/1 ``ice_free`` field (..., ny, nx).

    ``in_place``: H_new written over H's buffer (a forward time loop then carries the
    thickness without copying it each step). Not where H is kept for reverse mode: XLA would
    then copy H before the call, one copy per step more than it saves."""
    *lead, ny, nx = H.shape
    out = (jax.ShapeDtypeStruct(H.shape, H.dtype), jax.ShapeDtypeStruct(tuple(lead), H.dtype),
           jax.ShapeDtypeStruct(tuple(lead), H.dtype))
    # Without cells held ice-free, div stands in for the field (not read; not H, which may be
    # written over).
    return _ffi(UPDATE_TARGETS, out, H, div, dt, b, div if ice_free is None else ice_free,
                aliases={0: 0} if in_place else None,
                has_ice_free=np.int64(ice_free is not None))


def update_vjp_call(H, div, dt, b, ice_free, ct_out, ct_applied, ct_removed):
    """The FFI call of the step end's adjoint: the cotangents of (H, div, dt, b, ice_free)
    for those of ``update_call``'s outputs (ice_free None: of a zero field)."""
    field = jax.ShapeDtypeStruct(H.shape, H.dtype)
    out = (field, field, jax.ShapeDtypeStruct(H.shape[:-2], H.dtype), field, field)
    return _ffi(UPDATE_VJP_TARGETS, out, H, div, dt, b, H if ice_free is None else ice_free,
                ct_out, ct_applied, ct_removed, has_ice_free=np.int64(ice_free is not None))


def faces_vjp_call(H, bed, coef, dmax, ct_qx, ct_qy, ct_dmax, ct_H_in=None, *, dx: float,
                   periodic: tuple[bool, bool]):
    """The FFI call of the face kernel's adjoint: (ct_H, ct_bed, ct_coef) of ``faces_call``'s
    outputs (qx, qy, D_max) for their cotangents, with D_max (the forward's) for the ties of
    the maximum; ``ct_H_in``, a cotangent of H from H's other uses, is added to ct_H (in
    place)."""
    out = (jax.ShapeDtypeStruct(H.shape, H.dtype), jax.ShapeDtypeStruct(H.shape, H.dtype),
           jax.ShapeDtypeStruct(coef.shape, H.dtype))
    has = ct_H_in is not None
    # Without one, H stands in for the field (not read).
    return _ffi(FACES_VJP_TARGETS, out, H, bed, coef, dmax, ct_qx, ct_qy, ct_dmax,
                ct_H_in if has else H, aliases={7: 0} if has else None,
                has_ct_in=np.int64(has), coef_fields=np.int64(coef_fields(H, coef)),
                **_grid(dx, periodic))


def limit_vjp_call(H, qx, qy, dt, ct_div, ct_edge, *, dx: float,
                   periodic: tuple[bool, bool]):
    """The FFI call of the limiter kernel's adjoint: (ct_H, ct_qx, ct_qy, ct_dt) of
    ``limit_call``'s outputs (div q, edge outflow) for their cotangents."""
    out = (jax.ShapeDtypeStruct(H.shape, H.dtype), jax.ShapeDtypeStruct(qx.shape, H.dtype),
           jax.ShapeDtypeStruct(qy.shape, H.dtype), jax.ShapeDtypeStruct(dt.shape, H.dtype))
    return _ffi(LIMIT_VJP_TARGETS, out, H, qx, qy, dt, ct_div, ct_edge,
                **_grid(dx, periodic))


def limit_update_vjp_call(H, qx, qy, dt, b, ice_free, ct_edge, ct_out, ct_applied,
                          ct_removed, *, dx: float, periodic: tuple[bool, bool]):
    """The FFI call of the fused adjoint of the limiter and the step's end
    (``sia_limit_adjoint.cc``): (ct_H, ct_qx, ct_qy, ct_dt, ct_b, ct_ice_free) of
    ``limit_call``'s edge outflow and ``update_call``'s outputs at ``limit_call``'s div q, for
    their cotangents (ice_free None: H stands in for the field, not read, and the last
    output is a zero of shape (..., 1, 1), not a field that the kernel would have to fill)."""
    field = jax.ShapeDtypeStruct(H.shape, H.dtype)
    ct_mask = field if ice_free is not None else jax.ShapeDtypeStruct((*H.shape[:-2], 1, 1),
                                                                       H.dtype)
    out = (field, jax.ShapeDtypeStruct(qx.shape, H.dtype),
           jax.ShapeDtypeStruct(qy.shape, H.dtype), jax.ShapeDtypeStruct(dt.shape, H.dtype),
           field, ct_mask)
    return _ffi(LIMIT_UPDATE_VJP_TARGETS, out, H, qx, qy, dt, b,
                H if ice_free is None else ice_free, ct_edge, ct_out, ct_applied, ct_removed,
                has_ice_free=np.int64(ice_free is not None), **_grid(dx, periodic))


def native_vjp_enabled() -> bool:
    """False when ``GLACIER_NATIVE_VJP`` is 0, off, false or no: the kernels' reverse mode
    then goes through the XLA expressions (``with_reference_vjp``)."""
    value = os.environ.get("GLACIER_NATIVE_VJP", "1").strip().lower()
    return value not in ("0", "off", "false", "no")


def with_native_vjp(kernel, adjoint, *args, fwd_kernel=None):
    """``kernel(*args)``, differentiated in reverse mode by the adjoint kernel:
    ``adjoint(args, outputs, cotangents)`` returns the cotangents of ``args``. The residuals
    are the inputs and the outputs; the adjoint recomputes what else it needs.
    ``fwd_kernel``: the same values, for the forward sweep of reverse mode (default
    ``kernel``)."""

    @jax.custom_vjp
    def f(*args):
        return kernel(*args)

    def fwd(*args):
        out = (fwd_kernel or kernel)(*args)
        return out, (args, out)

    def bwd(res, ct):
        args, out = res
        return tuple(adjoint(args, out, ct))

    f.defvjp(fwd, bwd)
    return f(*args)


def with_reference_vjp(kernel, reference, *args, fwd_kernel=None):
    """``kernel(*args)``, differentiated in reverse mode as ``reference(*args)`` (the XLA
    expressions of the same quantities, equal to the kernel's values to round-off): its VJP
    is the cotangent rule, and the values are the kernel's in the forward sweep too
    (``fwd_kernel`` there, as in ``with_native_vjp``)."""

    @jax.custom_vjp
    def f(*args):
        return kernel(*args)

    def fwd(*args):
        # The primal values from the kernel, the residuals from the reference: a checkpointed
        # forward sweep keeps no residuals, so it runs the kernel alone.
        _, vjp = jax.vjp(reference, *args)
        return (fwd_kernel or kernel)(*args), vjp

    def bwd(vjp, ct):
        return vjp(ct)

    f.defvjp(fwd, bwd)
    return f(*args)


def fluxes_native(H, bed, coef, reference, *, dx: float, periodic: tuple[bool, bool],
                  through: bool = False):
    """(qx, qy, D_max) by the kernel, differentiated by the adjoint kernel (or, with
    ``GLACIER_NATIVE_VJP=0``, as ``reference(H, bed, coef)``).

    ``through``: (qx, qy, D_max, H') where H' is H itself, for the step's other uses of the
    thickness: their cotangents then reach the adjoint kernel as that of H', which adds them
    to its own in place. Otherwise XLA adds the four cotangents of H of an explicit step in
    one fusion of six input fields, which it splits across two cores on a 100 x 100 grid (any
    fusion touching 512 kB or more is), and the split costs 40 us of a 450 us gradient step
    where one core takes 8 us.
    """
    kernel = functools.partial(faces_call, dx=dx, periodic=periodic)
    coef = jnp.asarray(coef, H.dtype)
    if not native_vjp_enabled():
        out = with_reference_vjp(kernel, reference, H, bed, coef)
        return (*out, H) if through else out

    def kernel_through(H, bed, coef):
        return (*kernel(H, bed, coef), H)

    def adjoint(args, out, ct):  # ct: those of qx, qy, D_max (and of H' with ``through``)
        H, bed, coef = args
        return faces_vjp_call(H, bed, coef, out[2], *ct, dx=dx, periodic=periodic)

    return with_native_vjp(kernel_through if through else kernel, adjoint, H, bed, coef)


def update_native(H, div, dt, b, ice_free, reference):
    """(H_new, applied, removed) of the step's end by the kernel, differentiated by its
    adjoint kernel (or, with ``GLACIER_NATIVE_VJP=0``, as ``reference(H, div, dt, b,
    ice_free)``, XLA's elementwise expressions)."""
    dt = jnp.asarray(dt, H.dtype)
    if ice_free is None:
        def kernel(H, div, dt, b):
            return update_call(H, div, dt, b)

        def adjoint(args, out, ct):
            return update_vjp_call(*args, None, *ct)[:4]

        if not native_vjp_enabled():
            return with_reference_vjp(kernel, lambda *a: reference(*a, None), H, div, dt, b)
        return with_native_vjp(kernel, adjoint, H, div, dt, b)
    if not native_vjp_enabled():
        return with_reference_vjp(update_call, reference, H, div, dt, b, ice_free)
    return with_native_vjp(update_call, lambda args, out, ct: update_vjp_call(*args, *ct),
                           H, div, dt, b, ice_free)


def limited_divergence_native(H, qx, qy, dt, reference, *, dx: float,
                              periodic: tuple[bool, bool]):
    """(div q, edge outflow) by the kernel, differentiated by the adjoint kernel (or, with
    ``GLACIER_NATIVE_VJP=0``, as ``reference(H, qx, qy, dt)``)."""
    kernel = functools.partial(limit_call, dx=dx, periodic=periodic)
    dt = jnp.asarray(dt, H.dtype)
    if not native_vjp_enabled():
        return with_reference_vjp(kernel, reference, H, qx, qy, dt)

    def adjoint(args, out, ct):
        return limit_vjp_call(*args, *ct, dx=dx, periodic=periodic)

    return with_native_vjp(kernel, adjoint, H, qx, qy, dt)


def limited_step_end_native(H, qx, qy, dt, b, ice_free, reference, *, dx: float,
                            periodic: tuple[bool, bool]):
    """(H_new, applied, removed, edge outflow) of an explicit step's limiter and end: the
    limiter kernel and the step-end kernel, differentiated as one by their fused adjoint
    kernel, whose residuals are the inputs alone (reverse mode does not rerun the limiter for
    div q: the adjoint remakes it row by row). With ``GLACIER_NATIVE_VJP=0``, as
    ``reference(H, qx, qy, dt, b, ice_free)``."""
    dt = jnp.asarray(dt, H.dtype)

    def kernel(H, qx, qy, dt, b, *mask, in_place=True):
        div, edge = limit_call(H, qx, qy, dt, dx=dx, periodic=periodic)
        return (*update_call(H, div, dt, b, *mask, in_place=in_place), edge)

    # Reverse mode keeps H: written over, XLA would copy it first.
    fwd_kernel = functools.partial(kernel, in_place=False)
    mask = () if ice_free is None else (ice_free,)
    if not native_vjp_enabled():
        return with_reference_vjp(kernel, lambda *a: reference(*a[:5], *(a[5:] or (None,))),
                                  H, qx, qy, dt, b, *mask, fwd_kernel=fwd_kernel)

    def adjoint(args, out, ct):  # the ice-free field from args: a closure may hold a tracer
        ct_out, ct_applied, ct_removed, ct_edge = ct
        cts = limit_update_vjp_call(*args[:5], args[5] if mask else None, ct_edge, ct_out,
                                    ct_applied, ct_removed, dx=dx, periodic=periodic)
        return cts if mask else cts[:5]

    return with_native_vjp(kernel, adjoint, H, qx, qy, dt, b, *mask, fwd_kernel=fwd_kernel)
