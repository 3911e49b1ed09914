// Helpers shared by the native kernels (sia_faces.cc, sia_faces_adjoint.cc, sia_update.cc,
// sia_limit_adjoint.cc), which ``physics.native`` compiles into one library.
#ifndef GLACIER_PHYSICS_SIA_KERNELS_H_
#define GLACIER_PHYSICS_SIA_KERNELS_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

namespace glacier_native {

// Index of a ghost-padded coordinate k in [-g, n + g) into [0, n): wrapped, or -1 (outside).
inline int64_t wrap_or_out(int64_t k, int64_t n, bool periodic) {
  if (k >= 0 && k < n) return k;
  if (!periodic) return -1;
  return ((k % n) + n) % n;
}

// a if c else b, bit for bit, as a bitwise blend. In ``c ? x[i] : y[i]`` inside a loop GCC
// reads each array only under its condition, which it vectorises as masked loads
// (vmaskmovpd), slow on AVX2 CPUs (on the Xeon's AVX2 build the limiter kernel's donor rows
// spent most of their time in them), and it does so even when both values were read first;
// the blend makes it read both with plain loads.
template <typename T>
inline T pick(bool c, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  U ua, ub;
  std::memcpy(&ua, &a, sizeof(T));
  std::memcpy(&ub, &b, sizeof(T));
  const U m = U(0) - U(c);
  const U r = (ua & m) | (ub & ~m);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

// The data of a scratch vector holding at least n values (grown when a larger grid comes).
template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// (ny, nx) of the trailing two dimensions and the number of glaciers before them.
template <typename Dims>
bool grid_dims(const Dims& dims, int64_t& ny, int64_t& nx, int64_t& batch) {
  if (dims.size() < 2) return false;
  ny = dims[dims.size() - 2];
  nx = dims[dims.size() - 1];
  batch = 1;
  for (size_t k = 0; k + 2 < dims.size(); ++k) batch *= dims[k];
  return true;
}

// Whether a value is not zero (NaN and Inf count), from its bits: the sign bit masked off, so
// that -0 is zero; an integer OR over a block vectorises where a float compare with an early
// exit does not.
template <typename T>
struct Bits;
template <>
struct Bits<double> {
  using U = uint64_t;
  static constexpr U kMagnitude = 0x7fffffffffffffffULL;
};
template <>
struct Bits<float> {
  using U = uint32_t;
  static constexpr U kMagnitude = 0x7fffffffU;
};

// The index of the first value of row[0 .. n) that is not zero, or n; blocks of 16 values at a
// time, so that a row of ice stops at once and an ice-free row is one vectorised pass.
template <typename T>
inline int64_t first_nonzero(const T* row, int64_t n) {
  using U = typename Bits<T>::U;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    U acc = 0;
    for (int k = 0; k < 16; ++k) {
      U u;
      std::memcpy(&u, row + j + k, sizeof(U));
      acc |= u & Bits<T>::kMagnitude;
    }
    if (acc != 0) break;
  }
  for (; j < n; ++j)
    if (row[j] != T(0)) return j;
  return n;
}

// One past the index of the last value of row[0 .. n) that is not zero, or 0 (by blocks from
// the end, as ``first_nonzero``).
template <typename T>
inline int64_t last_nonzero_end(const T* row, int64_t n) {
  using U = typename Bits<T>::U;
  int64_t j = n;
  for (; j >= 16; j -= 16) {
    U acc = 0;
    for (int k = 0; k < 16; ++k) {
      U u;
      std::memcpy(&u, row + j - 16 + k, sizeof(U));
      acc |= u & Bits<T>::kMagnitude;
    }
    if (acc != 0) break;
  }
  for (; j > 0; --j)
    if (row[j - 1] != T(0)) return j;
  return 0;
}

// Whether any value of row[0 .. n) is not zero.
template <typename T>
inline bool any_nonzero(const T* row, int64_t n) {
  return first_nonzero(row, n) < n;
}

// The columns [lo, hi) of a row that hold ice: its first and one past its last value that is
// not zero (NaN and Inf count); lo >= hi when there is none. A face whose upstream MUSCL
// stencil holds no ice has zero thickness, so D = 0, q = 0 and all their derivatives are zero
// there: the kernels skip such faces (a valley glacier covers about a third of its domain).
template <typename T>
inline void ice_span(const T* row, int64_t n, int64_t& lo, int64_t& hi) {
  lo = first_nonzero(row, n);
  hi = (lo < n) ? last_nonzero_end(row, n) : 0;
}

// The law's coefficient fields per cell: gamma, slide and the outline weight m (1, or 0
// outside a closed outline), each ``cells`` values apart. A face's coefficients (gamma,
// slide) are w 0.5 (lo + hi) with w = m_lo m_hi, of its two cells lo and hi: the mean of the
// two cells (``grid.cell_to_face``, the domain's edges taking the edge cell for both) and zero
// on a face between a cell of the outline and one outside (``grid.faces_within``).
//
// Faces [f0, f1) whose cells are lo[f - Shift] and hi[f] (an x-face row's interior: Shift 1,
// lo = hi = the cell row; a y-face row: Shift 0, lo and hi the cell rows on its two sides),
// into fg[f] and fs[f]. Plain indices, so that the loop vectorises.
template <int Shift, typename T>
inline void face_coefficients_run(int64_t f0, int64_t f1, const T* __restrict lo,
                                  const T* __restrict hi, int64_t cells, T* __restrict fg,
                                  T* __restrict fs) {
  const T *g_lo = lo, *s_lo = lo + cells, *m_lo = lo + 2 * cells;
  const T *g_hi = hi, *s_hi = hi + cells, *m_hi = hi + 2 * cells;
  for (int64_t f = f0; f < f1; ++f) {
    const T w = m_lo[f - Shift] * m_hi[f];
    fg[f] = w * (T(0.5) * (g_lo[f - Shift] + g_hi[f]));
    fs[f] = w * (T(0.5) * (s_lo[f - Shift] + s_hi[f]));
  }
}

// The coefficients of faces [f0, f1) of x-face row ``row`` (nx + 1 faces: face f between cells
// f - 1 and f, the edge faces 0 and nx taking the edge cell for both sides).
template <typename T>
inline void x_face_coefficients(int64_t f0, int64_t f1, const T* row, int64_t nx, int64_t cells,
                                T* fg, T* fs) {
  if (f0 >= f1) return;
  if (f0 == 0) face_coefficients_run<0>(0, 1, row, row, cells, fg, fs);
  face_coefficients_run<1>(std::max<int64_t>(f0, 1), std::min(f1, nx), row, row, cells, fg, fs);
  if (f1 == nx + 1) {  // fg[nx] from cell nx - 1 on both sides
    face_coefficients_run<0>(nx - 1, nx, row, row, cells, fg + 1, fs + 1);
  }
}

// The coefficients of faces [j0, j1) of a y-face row between the cell rows lo and hi.
template <typename T>
inline void y_face_coefficients(int64_t j0, int64_t j1, const T* lo, const T* hi, int64_t cells,
                                T* fg, T* fs) {
  face_coefficients_run<0>(j0, j1, lo, hi, cells, fg, fs);
}

// Cells of a batch from which its glaciers are shared with XLA's intra-op threads (below,
// waking a thread costs more than it saves; as the face kernel's bands of one glacier).
constexpr int64_t kParallelBatchCells = 32768;

// Whether a batch of ``batch`` glaciers of ``cells`` cells each is shared between threads.
inline bool shares_glaciers(int64_t batch, int64_t cells) {
  return batch > 1 && batch * cells >= kParallelBatchCells;
}

// work(g) for every glacier g < n of a batch, each on one thread: with ``share``, the calling
// thread and up to (pool threads - 1) tasks on ``pool`` (XLA's intra-op pool) pull glaciers
// from a shared counter; else the calling thread alone, in order. A glacier is computed whole
// by one thread, so the results do not depend on the threads. The caller works through the
// glaciers itself if no task starts, and waits only for glaciers a task claimed; the shared
// state lives as long as the last task that holds it (a task that starts late finds no
// glacier left and never calls ``work``).
template <typename Pool>
void for_each_glacier(Pool& pool, bool share, int64_t n,
                      const std::function<void(int64_t)>& work) {
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
    const std::function<void(int64_t)>* work = nullptr;
  };
  auto shared = std::make_shared<Shared>();
  shared->work = &work;
  auto run = [shared, n]() {
    for (int64_t g = shared->next.fetch_add(1); g < n; g = shared->next.fetch_add(1)) {
      (*shared->work)(g);
      shared->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = share ? std::min<int64_t>(pool.num_threads(), n) - 1 : 0;
  for (int64_t k = 0; k < helpers; ++k) pool.Schedule(std::function<void()>(run));
  run();
  while (shared->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

// The step end's vectors and its adjoint (``sia_update.cc``), shared with the fused adjoint of
// the limiter and the step's end (``sia_limit_adjoint.cc``).
// A 32-byte vector of T in GCC's vector types: the loops below are written on it (the compiler
// does not vectorise two sums and a select of plain loops; wider vectors compile to scalar
// code for AVX2), and the cells past the last whole vector take the same expressions on T.
template <typename T>
struct VecOf {
  typedef T type __attribute__((vector_size(32)));
};
template <typename T>
using Vec = typename VecOf<T>::type;

template <typename T>
inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}

// The adjoint (VJP) of ``update_one`` for the cotangents of H_new, applied and removed, with
// JAX's conventions at the kinks of max(x, 0): the whole cotangent where x > 0, half at
// x == 0, none where x < 0 or x is NaN. Per cell, with h = max(x, 0) before emptying:
//   ct_h = ct_out + (ct_removed - ct_out) m + ct_applied,   ct_x = w(x) ct_h,
//   ct_flow = ct_x - ct_applied,   ct_H = ct_flow,   ct_div = -dt ct_flow,   ct_b = dt ct_x,
//   ct_m = (ct_removed - ct_out) h,   ct_dt = sum(ct_x b - ct_flow div).
template <bool Masked, typename V, typename T>
inline void update_vjp_value(V H, V div, T dt, V b, V m, V ct_out, T ct_applied, T ct_removed,
                             V& ct_H, V& ct_div, V& ct_b, V& ct_m, V& acc) {
  const V zero{};
  const V one = zero + T(1), half = zero + T(0.5);
  V flow = H - dt * div;
  V x = flow + dt * b;
  V h = (x > zero || x != x) ? x : zero;
  V w = (x > zero) ? one : (x == zero) ? half : zero;
  V ch = ct_out + ct_applied;
  if (Masked) {
    V cr = ct_removed - ct_out;
    ch = ch + cr * m;
    ct_m = cr * h;
  }
  V cx = w * ch;
  V cf = cx - ct_applied;
  ct_H = cf;
  ct_div = -dt * cf;
  ct_b = dt * cx;
  acc += cx * b - cf * div;
}

template <typename T, bool Masked>
__attribute__((noinline)) void update_vjp_cells(
    int64_t n, const T* __restrict H, const T* __restrict div, T dt, const T* __restrict b,
    const T* __restrict m, const T* __restrict ct_out, T ct_applied, T ct_removed,
    T* __restrict ct_H, T* __restrict ct_div, T* __restrict ct_b, T* __restrict ct_m,
    T* __restrict acc) {
  constexpr int64_t L = sizeof(Vec<T>) / sizeof(T);
  Vec<T> s{}, no_mask{};
  int64_t k = 0;
  for (; k + L <= n; k += L) {
    Vec<T> cH, cd, cb, cm;
    update_vjp_value<Masked>(load(H + k), load(div + k), dt, load(b + k),
                             Masked ? load(m + k) : no_mask, load(ct_out + k), ct_applied,
                             ct_removed, cH, cd, cb, cm, s);
    store(ct_H + k, cH);
    store(ct_div + k, cd);
    store(ct_b + k, cb);
    if (Masked) store(ct_m + k, cm);
  }
  T total = T(0);
  for (int64_t lane = 0; lane < L; ++lane) total += s[lane];
  for (; k < n; ++k) {
    T cm = T(0);
    update_vjp_value<Masked>(H[k], div[k], dt, b[k], Masked ? m[k] : T(0), ct_out[k],
                             ct_applied, ct_removed, ct_H[k], ct_div[k], ct_b[k], cm, total);
    if (Masked) ct_m[k] = cm;
  }
  *acc = total;
}

// The limiter's rows (sia_faces.cc's limiter kernel; the fused adjoint of sia_limit_adjoint.cc
// remakes div q with the same functions, bit for bit). Fluxes q scaled by their donor's factor: s_lo's where q flows towards + (out of the low
// cell), s_hi's otherwise.
template <typename T>
__attribute__((noinline)) void donor_row(int64_t n, const T* __restrict q,
                                         const T* __restrict s_lo, const T* __restrict s_hi,
                                         T* __restrict out) {
  for (int64_t f = 0; f < n; ++f)
    out[f] = q[f] * glacier_native::pick(q[f] > T(0), s_lo[f], s_hi[f]);
}

template <typename T>
__attribute__((noinline)) void divergence_row(int64_t n, const T* __restrict l,
                                              const T* __restrict lo, const T* __restrict hi,
                                              T inv_dx, T* __restrict d) {
  for (int64_t j = 0; j < n; ++j) d[j] = (((l[j + 1] - l[j]) + hi[j]) - lo[j]) * inv_dx;
}

}  // namespace glacier_native

#endif  // GLACIER_PHYSICS_SIA_KERNELS_H_
