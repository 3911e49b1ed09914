// The end of an explicit step (``schemes.ExplicitMUSCL``) as one CPU kernel: an XLA FFI custom
// call, built with the other kernels by ``physics.native``.
//
// Per cell, from the thickness H, the limited flux divergence div (``sia_faces.cc``'s limiter
// kernel), the step dt and the balance rate b at the step's start:
//   H_flow = H - dt div,   H_new = max(H_flow + dt b, 0)   (max(NaN, 0) = NaN, as jnp.maximum),
//   applied = sum(H_new - H_flow)                          (the balance actually applied),
// and where cells are held ice-free (``has_ice_free``, a 0/1 field m):
//   removed = sum(H_new m),   H_new = H_new - H_new m.
// XLA makes four to six passes of these (each recomputing the product and the maximum) and two
// reductions; here it is one pass (README, "The native kernels").
//
// The compiler contracts H - dt div and H_flow + dt b into fused multiply-adds where the target
// has them, as XLA's CPU compiler does, so that H_new equals XLA's bit for bit
// (``tests/numerics/test_native_update.py``); the two sums go in vector lanes (their order
// differs from XLA's: round-off).
//
// Inputs: H, div, b (..., ny, nx), dt (...), ice_free (..., ny, nx; read only with
// has_ice_free = 1). Outputs: H_new (..., ny, nx), applied (...), removed (...). H_new may be
// H's buffer (``native.update_call(in_place=True)`` aliases them, so that a forward time loop
// carries the thickness without a copy per step): each cell's H is read before its H_new is
// written.
//
// Its adjoint (``update_vjp_impl``, the rule of ``native.update_native``'s ``jax.custom_vjp``;
// its cell loop ``update_vjp_cells`` is in sia_kernels.h, shared with the fused adjoint of
// sia_limit_adjoint.cc)
// takes the same inputs and the cotangents of the three outputs and returns those of H, div,
// dt, b and ice_free, with JAX's one-sided derivatives at max(x, 0)'s kink.
#include <cstdint>
#include <cstring>

#include "sia_kernels.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using glacier_native::grid_dims;

using glacier_native::load;
using glacier_native::store;
using glacier_native::update_vjp_cells;
using glacier_native::Vec;

// The step's end for one cell or one vector of cells (V: T or Vec<T>): returns H_new, adds
// H_new - H_flow to a and, ``Masked``, the emptied part to r.
template <bool Masked, typename V, typename T>
inline V update_value(V H, V div, T dt, V b, V m, V& a, V& r) {
  const V zero{};
  V flow = H - dt * div;
  V x = flow + dt * b;
  V h = (x > zero || x != x) ? x : zero;
  a += h - flow;
  if (Masked) {
    V c = h * m;
    h = h - c;
    r += c;
  }
  return h;
}

// Cells [0, n) of one glacier; the sums in the vector's lanes (a8, r8: 8 or fewer of them).
template <typename T, bool Masked>
__attribute__((noinline)) void update_cells(int64_t n, const T* H,
                                            const T* __restrict div, T dt,
                                            const T* __restrict b, const T* __restrict m,
                                            T* out, T* __restrict a8, T* __restrict r8) {
  constexpr int64_t L = sizeof(Vec<T>) / sizeof(T);
  Vec<T> a{}, r{}, no_mask{};
  int64_t k = 0;
  for (; k + L <= n; k += L)
    store(out + k, update_value<Masked>(load(H + k), load(div + k), dt, load(b + k),
                                        Masked ? load(m + k) : no_mask, a, r));
  for (int64_t lane = 0; lane < L; ++lane) a8[lane] = a[lane], r8[lane] = r[lane];
  for (; k < n; ++k)
    out[k] = update_value<Masked>(H[k], div[k], dt, b[k], Masked ? m[k] : T(0), a8[0], r8[0]);
}

template <typename T>
void update_one(int64_t n, const T* H, const T* div, T dt, const T* b, const T* m, T* out,
                T* applied, T* removed) {
  T a8[8] = {}, r8[8] = {};
  if (m != nullptr)
    update_cells<T, true>(n, H, div, dt, b, m, out, a8, r8);
  else
    update_cells<T, false>(n, H, div, dt, b, m, out, a8, r8);
  T a = T(0), r = T(0);
  for (int lane = 0; lane < 8; ++lane) a += a8[lane], r += r8[lane];
  *applied = a;
  *removed = r;
}

template <ffi::DataType DT>
ffi::Error update_impl(ffi::Buffer<DT> H, ffi::Buffer<DT> div, ffi::Buffer<DT> dt,
                       ffi::Buffer<DT> b, ffi::Buffer<DT> ice_free, int64_t has_ice_free,
                       ffi::ResultBuffer<DT> out, ffi::ResultBuffer<DT> applied,
                       ffi::ResultBuffer<DT> removed) {
  using T = ffi::NativeType<DT>;
  int64_t ny, nx, batch;
  if (!grid_dims(H.dimensions(), ny, nx, batch))
    return ffi::Error::InvalidArgument("H must have at least 2 dimensions");
  const int64_t n = ny * nx;
  if (div.element_count() != batch * n || b.element_count() != batch * n
      || dt.element_count() != batch
      || (has_ice_free != 0 && ice_free.element_count() != batch * n))
    return ffi::Error::InvalidArgument("div, dt, b and ice_free must fit H");
  for (int64_t g = 0; g < batch; ++g)
    update_one<T>(n, H.typed_data() + g * n, div.typed_data() + g * n, dt.typed_data()[g],
                  b.typed_data() + g * n,
                  has_ice_free != 0 ? ice_free.typed_data() + g * n : nullptr,
                  out->typed_data() + g * n, applied->typed_data() + g,
                  removed->typed_data() + g);
  return ffi::Error::Success();
}

template <ffi::DataType DT>
ffi::Error update_vjp_impl(ffi::Buffer<DT> H, ffi::Buffer<DT> div, ffi::Buffer<DT> dt,
                           ffi::Buffer<DT> b, ffi::Buffer<DT> ice_free, ffi::Buffer<DT> ct_out,
                           ffi::Buffer<DT> ct_applied, ffi::Buffer<DT> ct_removed,
                           int64_t has_ice_free, ffi::ResultBuffer<DT> ct_H,
                           ffi::ResultBuffer<DT> ct_div, ffi::ResultBuffer<DT> ct_dt,
                           ffi::ResultBuffer<DT> ct_b, ffi::ResultBuffer<DT> ct_m) {
  using T = ffi::NativeType<DT>;
  int64_t ny, nx, batch;
  if (!grid_dims(H.dimensions(), ny, nx, batch))
    return ffi::Error::InvalidArgument("H must have at least 2 dimensions");
  const int64_t n = ny * nx;
  if (div.element_count() != batch * n || b.element_count() != batch * n
      || dt.element_count() != batch || ct_out.element_count() != batch * n
      || ct_applied.element_count() != batch || ct_removed.element_count() != batch
      || (has_ice_free != 0 && ice_free.element_count() != batch * n)
      || ct_m->element_count() != ice_free.element_count())
    return ffi::Error::InvalidArgument("the update adjoint's arguments do not fit H");
  for (int64_t g = 0; g < batch; ++g) {
    const T* h = H.typed_data() + g * n;
    const T* d = div.typed_data() + g * n;
    const T* bb = b.typed_data() + g * n;
    const T* c = ct_out.typed_data() + g * n;
    T step = dt.typed_data()[g], ca = ct_applied.typed_data()[g];
    T cr = ct_removed.typed_data()[g];
    T* oH = ct_H->typed_data() + g * n;
    T* od = ct_div->typed_data() + g * n;
    T* ob = ct_b->typed_data() + g * n;
    T* odt = ct_dt->typed_data() + g;
    if (has_ice_free != 0)
      update_vjp_cells<T, true>(n, h, d, step, bb, ice_free.typed_data() + g * n, c, ca, cr, oH,
                                od, ob, ct_m->typed_data() + g * n, odt);
    else
      update_vjp_cells<T, false>(n, h, d, step, bb, nullptr, c, ca, cr, oH, od, ob, nullptr,
                                 odt);
  }
  if (has_ice_free == 0)  // the stand-in field (H) takes no cotangent
    std::memset(ct_m->typed_data(), 0, ct_m->size_bytes());
  return ffi::Error::Success();
}

}  // namespace

#define GLACIER_BIND_UPDATE(DT)                  \
  ffi::Ffi::Bind()                               \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Attr<int64_t>("has_ice_free")             \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaUpdateF64, update_impl<ffi::F64>,
                              GLACIER_BIND_UPDATE(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaUpdateF32, update_impl<ffi::F32>,
                              GLACIER_BIND_UPDATE(ffi::F32));

#define GLACIER_BIND_UPDATE_VJP(DT)              \
  ffi::Ffi::Bind()                               \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Arg<ffi::Buffer<DT>>()                    \
      .Attr<int64_t>("has_ice_free")             \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()                    \
      .Ret<ffi::Buffer<DT>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaUpdateVjpF64, update_vjp_impl<ffi::F64>,
                              GLACIER_BIND_UPDATE_VJP(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlacierSiaUpdateVjpF32, update_vjp_impl<ffi::F32>,
                              GLACIER_BIND_UPDATE_VJP(ffi::F32));
