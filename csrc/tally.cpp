// ndcore::tally: the schema (defined once, here), shared input checks, and the tiny Python module
// ndcore._C that tells Python what was compiled. Kernels live in cpu/ and cuda/.
#include <torch/extension.h>
#include <torch/library.h>

#include <limits>
#include <string>

#include "tally.h"

namespace ndcore {

namespace {

std::string shape_str(const at::Tensor& t) { return c10::str(t.sizes()); }

void check_device(const at::Tensor& t, const char* name, c10::DeviceType device_type) {
  TORCH_CHECK(t.device().type() == device_type, "ndcore::tally: ", name, " is on ", t.device(),
              " but the kernel runs on ", c10::DeviceTypeName(device_type),
              "; put all inputs on the same device");
}

}  // namespace

void check_tally_inputs(const at::Tensor& acts, const at::Tensor& thresholds,
                        const at::Tensor& labels, const at::Tensor& label_category,
                        int64_t num_labels, int64_t num_categories, c10::DeviceType device_type) {
  check_device(acts, "acts", device_type);
  check_device(thresholds, "thresholds", device_type);
  check_device(labels, "labels", device_type);
  check_device(label_category, "label_category", device_type);
  TORCH_CHECK_VALUE(acts.dim() == 4, "ndcore::tally: acts must be [N, U, h, w], got shape ",
                    shape_str(acts));
  TORCH_CHECK_VALUE(labels.dim() == 4, "ndcore::tally: labels must be [N, P, sh, sw], got shape ",
                    shape_str(labels));
  TORCH_CHECK_VALUE(acts.scalar_type() == at::kFloat, "ndcore::tally: acts must be float32, got ",
                    acts.scalar_type());
  TORCH_CHECK_VALUE(thresholds.scalar_type() == at::kFloat,
                    "ndcore::tally: thresholds must be float32, got ", thresholds.scalar_type());
  TORCH_CHECK_VALUE(labels.scalar_type() == at::kInt, "ndcore::tally: labels must be int32, got ",
                    labels.scalar_type());
  TORCH_CHECK_VALUE(label_category.scalar_type() == at::kLong,
                    "ndcore::tally: label_category must be int64, got ",
                    label_category.scalar_type());
  TORCH_CHECK_VALUE(labels.size(0) == acts.size(0), "ndcore::tally: acts has ", acts.size(0),
                    " images but labels has ", labels.size(0));
  TORCH_CHECK_VALUE(thresholds.dim() == 1 && thresholds.size(0) == acts.size(1),
                    "ndcore::tally: thresholds must have shape (", acts.size(1), ",), got ",
                    shape_str(thresholds));
  TORCH_CHECK_VALUE(num_labels >= 1, "ndcore::tally: num_labels must be >= 1 (label 0 = none)");
  TORCH_CHECK_VALUE(num_categories >= 0, "ndcore::tally: num_categories must be >= 0");
  TORCH_CHECK_VALUE(label_category.dim() == 1 && label_category.size(0) == num_labels,
                    "ndcore::tally: label_category must have shape (", num_labels, ",), got ",
                    shape_str(label_category));
  const bool has_pixels = labels.size(2) * labels.size(3) > 0;
  TORCH_CHECK_VALUE(!has_pixels || (acts.size(2) > 0 && acts.size(3) > 0),
                    "ndcore::tally: activation maps must not be empty, got shape ",
                    shape_str(acts));
  TORCH_CHECK_VALUE(labels.size(1) * labels.size(2) * labels.size(3) <
                        std::numeric_limits<int32_t>::max(),
                    "ndcore::tally: too many label entries per image");
  TORCH_CHECK(acts.is_contiguous() && thresholds.is_contiguous() && labels.is_contiguous() &&
                  label_category.is_contiguous(),
              "ndcore::tally: inputs must be contiguous (the Python wrapper ndcore.ops.tally "
              "converts them)");
}

}  // namespace ndcore

TORCH_LIBRARY(ndcore, m) {
  m.def(
      "tally(Tensor acts, Tensor thresholds, Tensor labels, Tensor label_category, "
      "int num_labels, int num_categories) -> (Tensor, Tensor, Tensor)");
}

namespace {

bool compiled_with_cuda() {
#ifdef NDCORE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool compiled_with_openmp() {
#ifdef NDCORE_WITH_OPENMP
  return true;
#else
  return false;
#endif
}

// "major.minor" of the CUDA toolkit the kernels were compiled with, or "" without CUDA.
std::string cuda_version() {
#ifdef NDCORE_CUDA_VERSION
  return std::to_string(NDCORE_CUDA_VERSION / 1000) + "." +
         std::to_string((NDCORE_CUDA_VERSION % 1000) / 10);
#else
  return "";
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ndcore compiled kernels; importing this module registers torch.ops.ndcore.tally";
  m.def("compiled_with_cuda", &compiled_with_cuda, "True when the CUDA kernel was compiled in");
  m.def("compiled_with_openmp", &compiled_with_openmp,
        "True when compiled with OpenMP (torch's parallel backend)");
  m.def("cuda_version", &cuda_version, "CUDA toolkit version used to compile, '' without CUDA");
}
