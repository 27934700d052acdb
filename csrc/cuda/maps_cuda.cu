// Host side of the CUDA helpers shared by the ndcore kernels (see maps_cuda.cuh).
#include "maps_cuda.cuh"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <limits>

namespace ndcore {
namespace cuda {

namespace {

__global__ void source_weights_kernel(int64_t in_size, int64_t out_size, SourceWeight* out) {
  const int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (o < out_size) out[o] = source_weight(in_size, out_size, o);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

LaunchPlan plan_launch(int64_t n_img, int64_t n_units, int64_t sh, int64_t sw, int max_units,
                       int device_index) {
  const int64_t sms = at::cuda::getDeviceProperties(device_index)->multiProcessorCount;
  const int64_t target = 2 * sms;
  LaunchPlan p;
  p.units_per_block = std::max(1, max_units);
  p.tiles = ceil_div(n_units, p.units_per_block);
  while (n_img * p.tiles < target && p.units_per_block > 1) {
    p.units_per_block = (p.units_per_block + 1) / 2;
    p.tiles = ceil_div(n_units, p.units_per_block);
  }
  // Bands of whole rows, each with at least kThreads pixels so that no warp idles for long.
  const int64_t min_rows = std::min<int64_t>(sh, ceil_div(kThreads, sw));
  int64_t bands = 1;
  while (n_img * p.tiles * bands < target && ceil_div(sh, bands * 2) >= min_rows &&
         bands * 2 <= sh)
    bands *= 2;
  p.rows_per_band = static_cast<int>(ceil_div(sh, bands));
  p.bands = static_cast<int>(ceil_div(sh, p.rows_per_band));  // no empty band
  p.blocks = n_img * p.tiles * p.bands;
  TORCH_CHECK(p.blocks <= std::numeric_limits<int32_t>::max(),
              "ndcore: too many (image, unit) maps for one CUDA launch; split the batch");
  return p;
}

at::Tensor source_weights(int64_t in_size, int64_t out_size, const at::Tensor& like,
                          cudaStream_t stream) {
  static_assert(sizeof(SourceWeight) == 16, "SourceWeight is stored as 4 x 32 bit");
  at::Tensor buf = at::empty({out_size, 4}, like.options().dtype(at::kInt));
  if (out_size > 0) {
    const int threads = 128;
    const int blocks = static_cast<int>((out_size + threads - 1) / threads);
    source_weights_kernel<<<blocks, threads, 0, stream>>>(
        in_size, out_size, reinterpret_cast<SourceWeight*>(buf.data_ptr<int32_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return buf;
}

bool reserve_shared_bins(const void* kernel, int device_index, int64_t n_bins) {
  cudaFuncAttributes attr;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  const int64_t static_bytes = static_cast<int64_t>(attr.sharedSizeBytes);
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device_index);
  const int64_t limit = std::min<int64_t>(
      kMaxSharedBytes, std::max(prop->sharedMemPerBlockOptin, prop->sharedMemPerBlock));
  const int64_t bytes = n_bins * static_cast<int64_t>(sizeof(int));
  if (static_bytes + bytes > limit) return false;
  if (static_bytes + bytes > kDefaultSharedBytes) {
    // Always the same value (not `bytes`): concurrent callers must not lower each other's limit.
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(limit - static_bytes)));
  }
  return true;
}

}  // namespace cuda
}  // namespace ndcore
