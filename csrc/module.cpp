// The Python module ndcore._C: importing it registers torch.ops.ndcore.* (the TORCH_LIBRARY
// blocks of tally.cpp and iou_histogram.cpp are linked in), and it tells Python what was compiled.
#include <torch/extension.h>

#include <string>
#include <utility>

#include "tally_common.h"
#ifdef NDCORE_WITH_CUDA
#include "cuda/launch_plan.h"
#endif

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

#ifdef NDCORE_WITH_CUDA
// The CUDA kernels' block layout for a problem, for tests that the grid fills the GPU.
pybind11::dict cuda_launch_plan(int64_t n_img, int64_t n_units, int64_t sh, int64_t sw,
                                int64_t max_units, int64_t device_index) {
  const auto p = ndcore::cuda::plan_launch(n_img, n_units, sh, sw, static_cast<int>(max_units),
                                           static_cast<int>(device_index));
  pybind11::dict d;
  d["blocks"] = p.blocks;
  d["units_per_block"] = p.units_per_block;
  d["bands"] = p.bands;
  d["rows_per_band"] = p.rows_per_band;
  return d;
}
#endif

// count_edges_below and count_edges_below_from (tally_common.h) for one value, for the tests:
// iou_histogram's bins depend on both being exact, the latter for every hint.
std::pair<int32_t, int32_t> count_edges_below_py(const at::Tensor& edges, double v,
                                                 int64_t hint) {
  TORCH_CHECK_VALUE(edges.dim() == 1 && edges.scalar_type() == at::kFloat && edges.is_cpu() &&
                        edges.is_contiguous(),
                    "edges must be a contiguous 1-d float32 CPU tensor");
  const int32_t n = static_cast<int32_t>(edges.numel());
  TORCH_CHECK_VALUE(hint >= 0 && hint <= n, "hint must lie in [0, ", n, "]");
  const float* e = edges.data_ptr<float>();
  const float fv = static_cast<float>(v);
  return {ndcore::count_edges_below(e, n, fv),
          ndcore::count_edges_below_from(e, n, fv, static_cast<int32_t>(hint))};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ndcore compiled kernels; importing this module registers torch.ops.ndcore.*";
  m.def("compiled_with_cuda", &compiled_with_cuda, "True when the CUDA kernels were compiled in");
  m.def("compiled_with_openmp", &compiled_with_openmp,
        "True when compiled with OpenMP (torch's parallel backend)");
  m.def("cuda_version", &cuda_version, "CUDA toolkit version used to compile, '' without CUDA");
#ifdef NDCORE_WITH_CUDA
  m.def("cuda_launch_plan", &cuda_launch_plan, "Block layout of the CUDA kernels (for tests)",
        pybind11::arg("n_img"), pybind11::arg("n_units"), pybind11::arg("sh"),
        pybind11::arg("sw"), pybind11::arg("max_units") = 8, pybind11::arg("device_index") = 0);
#endif
  m.def("_count_edges_below", &count_edges_below_py,
        "(bisection, search from hint) counts of edges < v, for the tests");
}
