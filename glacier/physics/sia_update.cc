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
// has_ice_free = 1). Outputs: H_new (..., ny, nx), applied (...), removed (...).
#include <cstdint>
#include <cstring>

#include "sia_kernels.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using glacier_native::grid_dims;

// One cell (the tail of a row of 8).
template <typename T, bool Masked>
inline T update_cell(T H, T div, T dt, T b, T m, T& a, T& r) {
  T flow = H - dt * div;
  T x = flow + dt * b;
  T h = (x > T(0) || x != x) ? x : T(0);
  a += h - flow;
  if (Masked) {
    T c = h * m;
    h = h - c;
    r += c;
  }
  return h;
}

// Cells [0, n) of one glacier, a 32-byte vector at a time in GCC's vector types (the sums in
// its lanes: the compiler does not vectorise two sums and a select of plain loops; wider
// vectors compile to scalar code for AVX2); ``Masked``: with ice-free cells m.
template <typename T, bool Masked>
__attribute__((noinline)) void update_cells(int64_t n, const T* __restrict H,
                                            const T* __restrict div, T dt,
                                            const T* __restrict b, const T* __restrict m,
                                            T* __restrict out, T* __restrict a8,
                                            T* __restrict r8) {
  constexpr int64_t L = 32 / sizeof(T);
  typedef T V __attribute__((vector_size(32)));
  V a = {}, r = {};
  const V zero = {};
  int64_t k = 0;
  for (; k + L <= n; k += L) {
    V h0, d0, b0, m0 = {};
    std::memcpy(&h0, H + k, sizeof(V));
    std::memcpy(&d0, div + k, sizeof(V));
    std::memcpy(&b0, b + k, sizeof(V));
    V flow = h0 - dt * d0;
    V x = flow + dt * b0;
    V h = (x > zero || x != x) ? x : zero;
    a += h - flow;
    if (Masked) {
      std::memcpy(&m0, m + k, sizeof(V));
      V c = h * m0;
      h = h - c;
      r += c;
    }
    std::memcpy(out + k, &h, sizeof(V));
  }
  for (int64_t lane = 0; lane < L; ++lane) a8[lane] = a[lane], r8[lane] = r[lane];
  for (; k < n; ++k)
    out[k] = update_cell<T, Masked>(H[k], div[k], dt, b[k], Masked ? m[k] : T(0), a8[0], r8[0]);
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
