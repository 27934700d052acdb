// CUDA kernel of ndcore::tally (semantics: ndcore/ops/reference.py). Compiled with --fmad=false
// so that the interpolation rounds exactly as the reference's separate float32 operations.
//
// One block per (image, tile of units). For each unit of the tile the block
//   * reduces the map's max and skips the map when it is <= the skip bound (tally_common.h);
//   * walks the output pixels (coalesced label reads), skipping cells whose corners are all
//     <= the bound, interpolating the others and comparing with the threshold;
//   * counts labels into a shared-memory histogram, flushed to the int64 output with one atomic
//     per non-zero bin (area and cat_hits of (image, unit) belong to this block alone).
// Out-of-range labels are ignored here (the CPU kernel raises): checking them would cost a sync.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include <limits>

#include "../tally.h"
#include "../tally_common.h"

namespace ndcore {
namespace {

constexpr int kThreads = 256;
constexpr int kUnitsPerBlock = 8;
constexpr int64_t kMaxSharedBins = 11 * 1024;  // 44 KiB of int32 bins: under the 48 KiB default

using ull = unsigned long long;

__device__ __forceinline__ float ignore_nan_max(float m, float v) { return v > m ? v : m; }

// Block-wide max (NaN ignored); every thread gets the result. `scratch` holds kThreads/32 floats.
__device__ float block_max(float v, float* scratch) {
  for (int off = 16; off > 0; off >>= 1) v = ignore_nan_max(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // scratch may still be read from the previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = scratch[0];
  for (int i = 1; i < kThreads / 32; ++i) m = ignore_nan_max(m, scratch[i]);
  return m;
}

__device__ int64_t block_sum(int64_t v, int64_t* scratch) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  int64_t s = 0;
  for (int i = 0; i < kThreads / 32; ++i) s += scratch[i];
  return s;
}

__global__ void source_weights_kernel(int64_t in_size, int64_t out_size, SourceWeight* out) {
  const int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (o < out_size) out[o] = source_weight(in_size, out_size, o);
}

struct Params {
  const float* acts;        // [N, U, h, w]
  const float* thr;         // [U]
  const int32_t* labels;    // [N, P, sh, sw]
  const int64_t* label_cat;  // [L]
  const SourceWeight* wy;   // [sh]
  const SourceWeight* wx;   // [sw]
  int64_t* inter;           // [U, L]
  int64_t* area;            // [N, U]
  int64_t* cat_hits;        // [N, U, C]
  int64_t n_units, h, w, n_planes, sh, sw, n_labels, n_cats;
  bool shared_labels, shared_cats;  // histograms in shared memory (else global atomics)
};

// Counts the labels of pixel p (a pixel of map (n, u) above its threshold).
__device__ __forceinline__ void count_pixel(const Params& p, const int32_t* labels_n, int64_t pix,
                                            int* hist, int* cat_hist, int64_t u,
                                            int64_t* cats_nu) {
  const int64_t npix = p.sh * p.sw;
  for (int64_t j = 0; j < p.n_planes; ++j) {
    const int32_t lab = __ldg(labels_n + j * npix + pix);
    if (lab <= 0 || lab >= p.n_labels) continue;
    if (p.shared_labels)
      atomicAdd(hist + lab, 1);
    else
      atomicAdd(reinterpret_cast<ull*>(p.inter + u * p.n_labels + lab), 1ull);
    const int64_t c = __ldg(p.label_cat + lab);
    if (c < 0 || c >= p.n_cats) continue;
    if (p.shared_cats)
      atomicAdd(cat_hist + c, 1);
    else
      atomicAdd(reinterpret_cast<ull*>(cats_nu + c), 1ull);
  }
}

__global__ void __launch_bounds__(kThreads) tally_kernel(Params p) {
  extern __shared__ int bins[];  // [L] label bins (if shared_labels), then [C] category bins
  __shared__ float max_scratch[kThreads / 32];
  __shared__ int64_t sum_scratch[kThreads / 32];
  int* hist = bins;
  int* cat_hist = bins + (p.shared_labels ? p.n_labels : 0);
  const int64_t n_bins = (p.shared_labels ? p.n_labels : 0) + (p.shared_cats ? p.n_cats : 0);

  const int64_t n = blockIdx.x;
  const int64_t u_begin = static_cast<int64_t>(blockIdx.y) * kUnitsPerBlock;
  const int64_t u_end =
      u_begin + kUnitsPerBlock < p.n_units ? u_begin + kUnitsPerBlock : p.n_units;
  const int64_t hw = p.h * p.w, npix = p.sh * p.sw;
  const int32_t* labels_n = p.labels + n * p.n_planes * npix;

  for (int64_t u = u_begin; u < u_end; ++u) {
    const float* a = p.acts + (n * p.n_units + u) * hw;
    const float t = __ldg(p.thr + u);
    const float s = skip_bound(t);
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < hw; i += kThreads) m = ignore_nan_max(m, __ldg(a + i));
    if (!(block_max(m, max_scratch) > s)) continue;  // uniform across the block

    for (int64_t i = threadIdx.x; i < n_bins; i += kThreads) bins[i] = 0;
    __syncthreads();
    int64_t* cats_nu = p.cat_hits + (n * p.n_units + u) * p.n_cats;
    int64_t area = 0;
    for (int64_t pix = threadIdx.x; pix < npix; pix += kThreads) {
      const SourceWeight wy = p.wy[pix / p.sw], wx = p.wx[pix % p.sw];
      const float* row0 = a + wy.i0 * p.w;
      const float* row1 = row0 + wy.step * p.w;
      const float v00 = __ldg(row0 + wx.i0), v01 = __ldg(row0 + wx.i0 + wx.step);
      const float v10 = __ldg(row1 + wx.i0), v11 = __ldg(row1 + wx.i0 + wx.step);
      const float cmax = ignore_nan_max(ignore_nan_max(v00, v01), ignore_nan_max(v10, v11));
      if (!(cmax > s)) continue;
      const float top = __fadd_rn(__fmul_rn(wx.l0, v00), __fmul_rn(wx.l1, v01));
      const float bottom = __fadd_rn(__fmul_rn(wx.l0, v10), __fmul_rn(wx.l1, v11));
      const float v = __fadd_rn(__fmul_rn(wy.l0, top), __fmul_rn(wy.l1, bottom));
      if (!(v > t)) continue;
      ++area;
      count_pixel(p, labels_n, pix, hist, cat_hist, u, cats_nu);
    }
    const int64_t total = block_sum(area, sum_scratch);  // also orders the bin updates
    if (threadIdx.x == 0) p.area[n * p.n_units + u] = total;
    if (p.shared_labels) {
      int64_t* inter_u = p.inter + u * p.n_labels;
      for (int64_t l = threadIdx.x; l < p.n_labels; l += kThreads)
        if (hist[l]) atomicAdd(reinterpret_cast<ull*>(inter_u + l), static_cast<ull>(hist[l]));
    }
    if (p.shared_cats)
      for (int64_t c = threadIdx.x; c < p.n_cats; c += kThreads) cats_nu[c] = cat_hist[c];
    __syncthreads();  // bins are reset for the next unit
  }
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

TallyResult tally_cuda(const at::Tensor& acts, const at::Tensor& thresholds,
                       const at::Tensor& labels, const at::Tensor& label_category,
                       int64_t num_labels, int64_t num_categories) {
  check_tally_inputs(acts, thresholds, labels, label_category, num_labels, num_categories,
                     c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(acts.device());
  const int64_t n_img = acts.size(0), n_units = acts.size(1);
  auto opts = acts.options().dtype(at::kLong);
  at::Tensor inter = at::zeros({n_units, num_labels}, opts);
  at::Tensor area = at::zeros({n_img, n_units}, opts);
  at::Tensor cat_hits = at::zeros({n_img, n_units, num_categories}, opts);
  const int64_t sh = labels.size(2), sw = labels.size(3);
  if (sh * sw == 0 || n_img == 0 || n_units == 0) return {inter, area, cat_hits};
  TORCH_CHECK(n_img <= std::numeric_limits<int32_t>::max(), "ndcore::tally: too many images");

  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(acts.device().index());
  const at::Tensor wy = source_weights(acts.size(2), sh, acts, stream);
  const at::Tensor wx = source_weights(acts.size(3), sw, acts, stream);

  Params p;
  p.acts = acts.data_ptr<float>();
  p.thr = thresholds.data_ptr<float>();
  p.labels = labels.data_ptr<int32_t>();
  p.label_cat = label_category.data_ptr<int64_t>();
  p.wy = reinterpret_cast<const SourceWeight*>(wy.data_ptr<int32_t>());
  p.wx = reinterpret_cast<const SourceWeight*>(wx.data_ptr<int32_t>());
  p.inter = inter.data_ptr<int64_t>();
  p.area = area.data_ptr<int64_t>();
  p.cat_hits = cat_hits.data_ptr<int64_t>();
  p.n_units = n_units;
  p.h = acts.size(2);
  p.w = acts.size(3);
  p.n_planes = labels.size(1);
  p.sh = sh;
  p.sw = sw;
  p.n_labels = num_labels;
  p.n_cats = num_categories;
  p.shared_labels = num_labels <= kMaxSharedBins;
  p.shared_cats = num_categories <= kMaxSharedBins - (p.shared_labels ? num_labels : 0);
  const int64_t n_bins = (p.shared_labels ? num_labels : 0) + (p.shared_cats ? num_categories : 0);

  const dim3 grid(static_cast<unsigned>(n_img),
                  static_cast<unsigned>((n_units + kUnitsPerBlock - 1) / kUnitsPerBlock));
  TORCH_CHECK(grid.y <= 65535, "ndcore::tally: too many units for one launch");
  tally_kernel<<<grid, kThreads, n_bins * sizeof(int), stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  inter.select(1, 0).zero_();
  return {inter, area, cat_hits};
}

}  // namespace
}  // namespace ndcore

TORCH_LIBRARY_IMPL(ndcore, CUDA, m) { m.impl("tally", &ndcore::tally_cuda); }
