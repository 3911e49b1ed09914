// Helpers shared by the native kernels (sia_faces.cc, sia_faces_adjoint.cc,
// sia_limit_adjoint.cc), which ``physics.native`` compiles into one library.
#ifndef GLACIER_PHYSICS_SIA_KERNELS_H_
#define GLACIER_PHYSICS_SIA_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace glacier_native {

// Index of a ghost-padded coordinate k in [-g, n + g) into [0, n): wrapped, or -1 (outside).
inline int64_t wrap_or_out(int64_t k, int64_t n, bool periodic) {
  if (k >= 0 && k < n) return k;
  if (!periodic) return -1;
  return ((k % n) + n) % n;
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

}  // namespace glacier_native

#endif  // GLACIER_PHYSICS_SIA_KERNELS_H_
