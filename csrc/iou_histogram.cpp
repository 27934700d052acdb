// ndcore::iou_histogram: schema and input checks (semantics: ndcore/ops/reference.py). Per unit
// u, label l and candidate threshold edges[u, j], it counts the upsampled activations whose last
// edge below them is edges[u, j]; suffix sums over j give, for every threshold at once, the
// intersections |M ∩ L_l| (l >= 1) and the mask areas |M| (column 0) that GAN Dissection's
// per-(unit, concept) best-IoU threshold needs. Kernels: cpu/ and cuda/iou_histogram_*.
#include <torch/library.h>

#include <ATen/ATen.h>

#include "checks.h"
#include "iou_histogram.h"

namespace ndcore {

namespace {
constexpr const char* kOp = "ndcore::iou_histogram";
}

void check_iou_histogram_inputs(const at::Tensor& acts, const at::Tensor& edges,
                                const at::Tensor& labels, int64_t num_labels,
                                c10::DeviceType kernel_device) {
  check_same_device(kOp, {{"acts", &acts}, {"edges", &edges}, {"labels", &labels}},
                    kernel_device);
  TORCH_CHECK_VALUE(acts.dim() == 4, kOp, ": acts must be [N, U, h, w], got shape ",
                    acts.sizes());
  check_labels_shape(kOp, acts, labels);
  TORCH_CHECK_VALUE(edges.dim() == 2 && edges.size(0) == acts.size(1) && edges.size(1) >= 1, kOp,
                    ": edges must have shape [", acts.size(1), ", B] with B >= 1, got shape ",
                    edges.sizes());
  check_num_labels(kOp, num_labels);
  // Divisions instead of the product: U * L * B may overflow int64.
  const int64_t n_units = acts.size(1), n_edges = edges.size(1);
  const int64_t max_cells = kMaxHistogramBytes / 8;
  TORCH_CHECK_VALUE(n_units == 0 || num_labels <= max_cells / n_edges / n_units, kOp,
                    ": the histogram [", n_units, ", ", num_labels, ", ", n_edges,
                    "] of int64 would exceed 2 GiB; split the units or use fewer edges");
  TORCH_CHECK_VALUE(acts.scalar_type() == at::kFloat, kOp, ": acts must be float32, got ",
                    c10::getDtypeNames(acts.scalar_type()).first);
  TORCH_CHECK_VALUE(edges.scalar_type() == at::kFloat, kOp, ": edges must be float32, got ",
                    c10::getDtypeNames(edges.scalar_type()).first);
  check_maps_not_empty(kOp, acts, labels);
  check_contiguous(kOp, {{"acts", &acts}, {"edges", &edges}, {"labels", &labels}});
}

at::Tensor check_iou_histogram_values(const at::Tensor& edges, const at::Tensor& labels,
                                      int64_t num_labels) {
  std::vector<at::Tensor> stats;
  stats.push_back(at::isfinite(edges).all());
  const int64_t n_edges = edges.size(1);
  stats.push_back(n_edges > 1 ? at::gt(edges.narrow(1, 1, n_edges - 1),
                                       edges.narrow(1, 0, n_edges - 1)).all()
                              : at::ones({}, edges.options().dtype(at::kBool)));
  if (labels.numel()) {
    const auto lab = minmax(labels);
    stats.insert(stats.end(), lab.begin(), lab.end());
  }
  const std::vector<int64_t> v = to_host(stats);
  if (labels.numel()) check_label_range(kOp, v[2], v[3], num_labels);
  TORCH_CHECK_VALUE(v[0], kOp, ": edges must be finite");
  TORCH_CHECK_VALUE(v[1], kOp, ": edges must be strictly increasing along each unit");
  return narrow_labels(labels);
}

}  // namespace ndcore

TORCH_LIBRARY_FRAGMENT(ndcore, m) {
  m.def("iou_histogram(Tensor acts, Tensor edges, Tensor labels, int num_labels) -> Tensor");
}
