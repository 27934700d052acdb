// CPU kernel of ndcore::iou_histogram (semantics: ndcore/ops/reference.py).
//
// A pixel counts for unit u only if its upsampled value exceeds the unit's lowest edge, so the
// walk over a map is tally's with threshold edges[u, 0] (for_each_pixel_above, maps_cpu.h:
// maps and cells that cannot exceed it are skipped). A counted pixel finds its bin j over the
// unit's edges (EdgeSearch) and bumps bin (0, j) once and (label, j) once per plane with a label.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../iou_histogram.h"
#include "../tally_common.h"
#include "maps_cpu.h"

namespace ndcore {
namespace {

// count_edges_below for the values of unit u, fast: a table of kBucketsPerEdge * B uniform
// buckets over [edges[0], edges[B-1]] gives the count at the start of v's bucket, c; the next
// kWalk edges (the unit's edges are stored padded with +inf) are then compared with v without a
// branch. Since `v > edges[k]` holds for a prefix of k, that sum is the count whenever the count
// is >= c (c == 0 or v > edges[c-1]) and < c + kWalk; otherwise (a crowded bucket, or a value
// that float rounding put in the next bucket) count_edges_below_from finds it, exactly.
// (Plain bisection, with its unpredictable branches, took most of the kernel's time.)
class EdgeSearch {
 public:
  static constexpr int32_t kBucketsPerEdge = 2;
  static constexpr int32_t kWalk = 4;
  static constexpr int64_t kMaxTable = int64_t(1) << 24;  // 64 MiB of bucket starts at most

  EdgeSearch(const float* edges, int64_t n_units, int32_t n_edges)
      : n_edges_(n_edges), stride_(n_edges + kWalk),
        n_buckets_(static_cast<int32_t>(std::max<int64_t>(
            1, std::min<int64_t>(kBucketsPerEdge * int64_t(n_edges), kMaxTable / n_units)))),
        padded_(n_units * stride_, std::numeric_limits<float>::infinity()),
        origin_(n_units), scale_(n_units), start_(n_units * n_buckets_) {
    for (int64_t u = 0; u < n_units; ++u) {
      const float* e = edges + u * n_edges;
      std::copy(e, e + n_edges, padded_.begin() + u * stride_);
      const double lo = e[0], width = (static_cast<double>(e[n_edges - 1]) - lo) / n_buckets_;
      origin_[u] = e[0];
      scale_[u] = width > 0 ? static_cast<float>(1.0 / width) : 0.0f;
      for (int32_t b = 0; b < n_buckets_; ++b)
        start_[u * n_buckets_ + b] =
            count_edges_below(e, n_edges, static_cast<float>(lo + b * width));
    }
  }

  // Number of edges of unit u strictly below v (v > edges[u, 0] here, so never NaN).
  int32_t count(int64_t u, float v) const {
    const float t = (v - origin_[u]) * scale_[u];
    const int32_t b = t > 0.0f ? (t < static_cast<float>(n_buckets_ - 1)
                                      ? static_cast<int32_t>(t) : n_buckets_ - 1)
                               : 0;
    const int32_t c = start_[u * n_buckets_ + b];
    const float* e = padded_.data() + u * stride_;
    int32_t k = c;
    for (int32_t i = 0; i < kWalk; ++i) k += v > e[c + i];
    if ((c == 0 || v > e[c - 1]) && k < c + kWalk) return k;
    return count_edges_below_from(e, n_edges_, v, c);
  }

 private:
  int32_t n_edges_, stride_, n_buckets_;
  std::vector<float> padded_;  // [U, B + kWalk], +inf after each unit's edges
  std::vector<float> origin_, scale_;
  std::vector<int32_t> start_;  // [U, n_buckets]
};

struct Problem {
  int64_t n_units, h, w, n_planes, sh, sw, n_labels;
  int32_t n_edges;
  const float* acts;
  const float* edges;  // [U, B]
  std::vector<float> skip;  // skip bound of each unit's lowest edge
  const EdgeSearch* search;
  const int32_t* labels;
  const cpu::Axis* ay;
  const cpu::Axis* ax;
};

// Map (n, u) into hist_u ([L, B]).
void histogram_map(const Problem& pb, int64_t n, int64_t u, int64_t* hist_u, float* xa,
                   float* xb) {
  const float* a = pb.acts + (n * pb.n_units + u) * pb.h * pb.w;
  // Locals captured by value: see tally_map (int64 counters would alias the fields of pb).
  const float lowest = pb.edges[u * pb.n_edges];
  const int64_t npix = pb.sh * pb.sw, sw = pb.sw, n_planes = pb.n_planes, n_edges = pb.n_edges;
  const int32_t* labels_n = pb.labels + n * n_planes * npix;
  const EdgeSearch* search = pb.search;
  cpu::for_each_pixel_above(  // pixels <= the lowest edge have j = -1: not counted
      a, pb.w, *pb.ay, *pb.ax, lowest, pb.skip[u], xa, xb,
      [npix, sw, n_planes, n_edges, labels_n, search, hist_u, u](int64_t y, int64_t x, float v) {
        const int64_t j = search->count(u, v) - 1;
        ++hist_u[j];  // column 0: every counted pixel
        const int64_t p = y * sw + x;
        for (int64_t k = 0; k < n_planes; ++k) {
          const int32_t lab = labels_n[k * npix + p];
          if (lab != 0) ++hist_u[lab * n_edges + j];
        }
      });
}

at::Tensor iou_histogram_cpu(const at::Tensor& acts, const at::Tensor& edges,
                             const at::Tensor& labels_in, int64_t num_labels) {
  check_iou_histogram_inputs(acts, edges, labels_in, num_labels, c10::DeviceType::CPU);
  const at::Tensor labels = check_iou_histogram_values(edges, labels_in, num_labels);
  const int64_t n_img = acts.size(0), n_units = acts.size(1), n_edges = edges.size(1);
  at::Tensor hist = at::zeros({n_units, num_labels, n_edges}, acts.options().dtype(at::kLong));
  if (labels.size(2) * labels.size(3) == 0 || n_img == 0 || n_units == 0) return hist;

  const cpu::Axis ay(acts.size(2), labels.size(2)), ax(acts.size(3), labels.size(3));
  Problem pb{n_units, acts.size(2), acts.size(3), labels.size(1), labels.size(2),
             labels.size(3), num_labels, static_cast<int32_t>(n_edges)};
  pb.acts = acts.data_ptr<float>();
  pb.edges = edges.data_ptr<float>();
  pb.skip.resize(n_units);
  for (int64_t u = 0; u < n_units; ++u) pb.skip[u] = skip_bound(pb.edges[u * n_edges]);
  const EdgeSearch search(pb.edges, n_units, pb.n_edges);
  pb.search = &search;
  pb.labels = labels.data_ptr<int32_t>();
  pb.ay = &ay;
  pb.ax = &ax;

  const int64_t row = num_labels * n_edges;
  cpu::parallel_over_maps(n_img, n_units, hist,
                          [&](int64_t n0, int64_t n1, int64_t u0, int64_t u1, int64_t* acc) {
    std::vector<float> xa(pb.sw), xb(pb.sw);
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t u = u0; u < u1; ++u)
        histogram_map(pb, n, u, acc + u * row, xa.data(), xb.data());
  });
  return hist;
}

}  // namespace
}  // namespace ndcore

TORCH_LIBRARY_IMPL(ndcore, CPU, m) { m.impl("iou_histogram", &ndcore::iou_histogram_cpu); }
