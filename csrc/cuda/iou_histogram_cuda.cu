// CUDA kernel of ndcore::iou_histogram (semantics: ndcore/ops/reference.py). Same block layout,
// skipping and pixel walk as tally (maps_cuda.cuh), with the unit's lowest edge as threshold: a
// pixel above it finds its bin j by bisection over the unit's edges (count_edges_below, shared
// with the CPU kernel) and adds 1 to bin (0, j) and to (label, j) for each labelled plane. The
// unit's [L, B] bins live in shared memory when they fit (flushed with one int64 atomic per
// non-zero bin), else in the global int64 output directly; both through warp-aggregated atomics.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include "../iou_histogram.h"
#include "../tally_common.h"
#include "maps_cuda.cuh"

namespace ndcore {
namespace {

using namespace ndcore::cuda;

constexpr int kMaxUnitsPerBlock = 8;

struct Params {
  const float* acts;       // [N, U, h, w]
  const float* edges;      // [U, B], finite, strictly increasing per unit
  const int32_t* labels;   // [N, P, sh, sw], values in [0, L)
  const SourceWeight* wy;  // [sh]
  const SourceWeight* wx;  // [sw]
  int64_t* hist;           // [U, L, B]
  int64_t n_units, tiles;
  int h, w, n_planes, sh, sw, n_edges, n_bins;  // n_bins = L * B < 2^28 (checked)
  int units_per_block, bands, rows_per_band;
  bool shared;  // a unit's bins in shared memory (else global atomics)
};

__global__ void __launch_bounds__(kThreads) iou_histogram_kernel(Params p) {
  extern __shared__ int bins[];  // [L * B] when p.shared
  __shared__ float max_scratch[kThreads / 32];
  if (p.shared) clear_bins(bins, p.n_bins);

  const BlockWork bw = block_work(blockIdx.x, p.n_units, p.tiles, p.bands, p.units_per_block);
  const Band band = band_rows(p.wy, bw.band, p.rows_per_band, p.sh);
  const int npix = p.sh * p.sw;
  const int32_t* labels_n = p.labels + bw.n * p.n_planes * npix;

  for (int64_t u = bw.u_begin; u < bw.u_end; ++u) {
    const float* a = p.acts + (bw.n * p.n_units + u) * p.h * p.w;
    const float* e = p.edges + u * p.n_edges;
    const float lowest = __ldg(e);
    const float s = skip_bound(lowest);
    if (!(band_max(a, p.w, band, max_scratch) > s)) continue;  // uniform across the block

    int64_t* hist_u = p.hist + u * p.n_bins;
    bool any = false;
    walk_band(band, p.sw, [&](bool valid, int y, int x) {
      float v;
      const bool hot =
          valid && candidate_value(a, p.w, p.wy, p.wx, y, x, s, &v) && v > lowest;
      any |= hot;
      if (!__any_sync(kFullMask, hot)) return;
      const int j = hot ? count_edges_below(e, p.n_edges, v) - 1 : 0;  // >= 0 when hot
      const int pix = y * p.sw + x;
      // Column 0 (every counted pixel), then one bin per labelled plane.
      for (int k = -1; k < p.n_planes; ++k) {
        const int lab = k < 0 ? 0 : (hot ? __ldg(labels_n + k * npix + pix) : 0);
        const bool counts = hot && (k < 0 || lab > 0);
        const int key = lab * p.n_edges + j;
        if (p.shared)
          warp_add(counts, key, [&](int b, int c) { add_shared(bins, b, c); });
        else
          warp_add(counts, key, [&](int b, int c) { add_global(hist_u, b, c); });
      }
    });
    if (__syncthreads_or(any) && p.shared) flush_bins(bins, p.n_bins, hist_u);
  }
}

at::Tensor iou_histogram_cuda(const at::Tensor& acts, const at::Tensor& edges,
                              const at::Tensor& labels_in, int64_t num_labels) {
  check_iou_histogram_inputs(acts, edges, labels_in, num_labels, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(acts.device());
  const at::Tensor labels = check_iou_histogram_values(edges, labels_in, num_labels);
  const int64_t n_img = acts.size(0), n_units = acts.size(1), n_edges = edges.size(1);
  at::Tensor hist = at::zeros({n_units, num_labels, n_edges}, acts.options().dtype(at::kLong));
  const int64_t sh = labels.size(2), sw = labels.size(3);
  if (sh * sw == 0 || n_img == 0 || n_units == 0) return hist;

  const int device = acts.device().index();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device);
  const at::Tensor wy = source_weights(acts.size(2), sh, acts, stream);
  const at::Tensor wx = source_weights(acts.size(3), sw, acts, stream);
  const LaunchPlan plan = plan_launch(n_img, n_units, sh, sw, kMaxUnitsPerBlock, device);

  Params p;
  p.acts = acts.data_ptr<float>();
  p.edges = edges.data_ptr<float>();
  p.labels = labels.data_ptr<int32_t>();
  p.wy = reinterpret_cast<const SourceWeight*>(wy.data_ptr<int32_t>());
  p.wx = reinterpret_cast<const SourceWeight*>(wx.data_ptr<int32_t>());
  p.hist = hist.data_ptr<int64_t>();
  p.n_units = n_units;
  p.tiles = plan.tiles;
  p.h = static_cast<int>(acts.size(2));
  p.w = static_cast<int>(acts.size(3));
  p.n_planes = static_cast<int>(labels.size(1));
  p.sh = static_cast<int>(sh);
  p.sw = static_cast<int>(sw);
  p.n_edges = static_cast<int>(n_edges);
  p.n_bins = static_cast<int>(num_labels * n_edges);  // <= 2^28: kMaxHistogramBytes, U >= 1
  p.units_per_block = plan.units_per_block;
  p.bands = plan.bands;
  p.rows_per_band = plan.rows_per_band;
  p.shared = reserve_shared_bins(reinterpret_cast<const void*>(&iou_histogram_kernel), device,
                                 p.n_bins);
  const size_t shared_bytes = p.shared ? p.n_bins * sizeof(int) : 0;

  iou_histogram_kernel<<<static_cast<unsigned>(plan.blocks), kThreads, shared_bytes, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return hist;
}

}  // namespace
}  // namespace ndcore

TORCH_LIBRARY_IMPL(ndcore, CUDA, m) { m.impl("iou_histogram", &ndcore::iou_histogram_cuda); }
