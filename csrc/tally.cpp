// ndcore::tally: the schema (the ndcore library is defined here; other ops add fragments) and its
// input checks. Kernels live in cpu/ and cuda/; checks shared with other ops are in checks.cpp;
// the Python module ndcore._C itself is module.cpp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "checks.h"
#include "tally.h"

namespace ndcore {

namespace {
constexpr const char* kOp = "ndcore::tally";
}

void check_tally_inputs(const at::Tensor& acts, const at::Tensor& thresholds,
                        const at::Tensor& labels, const at::Tensor& label_category,
                        int64_t num_labels, int64_t num_categories,
                        c10::DeviceType kernel_device) {
  check_same_device(kOp,
                    {{"acts", &acts}, {"thresholds", &thresholds}, {"labels", &labels},
                     {"label_category", &label_category}},
                    kernel_device);
  TORCH_CHECK_VALUE(acts.dim() == 4, kOp, ": acts must be [N, U, h, w], got shape ",
                    acts.sizes());
  check_labels_shape(kOp, acts, labels);
  TORCH_CHECK_VALUE(thresholds.dim() == 1 && thresholds.size(0) == acts.size(1), kOp,
                    ": thresholds must have shape [", acts.size(1), "], got shape ",
                    thresholds.sizes());
  check_num_labels(kOp, num_labels);
  TORCH_CHECK_VALUE(num_categories >= 0 && num_categories <= kMaxCategories, kOp,
                    ": num_categories must lie in [0, ", kMaxCategories, "], got ",
                    num_categories);
  TORCH_CHECK_VALUE(label_category.dim() == 1 && label_category.size(0) == num_labels, kOp,
                    ": label_category must have shape [", num_labels, "], got shape ",
                    label_category.sizes());
  // The Python wrapper converts these three; the op itself takes the kernels' types only.
  TORCH_CHECK_VALUE(acts.scalar_type() == at::kFloat, kOp, ": acts must be float32, got ",
                    c10::getDtypeNames(acts.scalar_type()).first);
  TORCH_CHECK_VALUE(thresholds.scalar_type() == at::kFloat, kOp,
                    ": thresholds must be float32, got ",
                    c10::getDtypeNames(thresholds.scalar_type()).first);
  TORCH_CHECK_VALUE(label_category.scalar_type() == at::kLong, kOp,
                    ": label_category must be int64, got ",
                    c10::getDtypeNames(label_category.scalar_type()).first);
  check_maps_not_empty(kOp, acts, labels);
  check_contiguous(kOp, {{"acts", &acts}, {"thresholds", &thresholds}, {"labels", &labels},
                         {"label_category", &label_category}});
}

at::Tensor check_tally_values(const at::Tensor& labels, const at::Tensor& label_category,
                              int64_t num_labels, int64_t num_categories) {
  std::vector<at::Tensor> stats = minmax(label_category);  // never empty: num_labels >= 1
  if (labels.numel()) {
    const auto lab = minmax(labels);
    stats.insert(stats.end(), lab.begin(), lab.end());
  }
  const std::vector<int64_t> v = to_host(stats);
  if (labels.numel()) check_label_range(kOp, v[2], v[3], num_labels);
  TORCH_CHECK_VALUE(v[0] >= -1 && v[1] < num_categories, kOp,
                    ": label_category values must be -1 or lie in [0, ", num_categories,
                    "), got [", v[0], ", ", v[1], "]");
  return narrow_labels(labels);
}

}  // namespace ndcore

TORCH_LIBRARY(ndcore, m) {
  m.def(
      "tally(Tensor acts, Tensor thresholds, Tensor labels, Tensor label_category, "
      "int num_labels, int num_categories) -> (Tensor, Tensor, Tensor)");
}

