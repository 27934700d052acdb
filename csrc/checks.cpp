// Shared input checks of the ndcore ops (see checks.h). Messages must stay identical to those of
// ndcore/ops/checks.py: the tests compare them.
#include "checks.h"

#include <ATen/ATen.h>

#include <limits>

namespace ndcore {

void check_same_device(const char* op, std::initializer_list<NamedTensor> tensors,
                       c10::DeviceType kernel_device) {
  const at::Tensor& first = *tensors.begin()->second;
  for (const auto& [name, t] : tensors) {
    TORCH_CHECK_VALUE(t->device() == first.device(), op, ": ", name, " is on ", t->device(),
                      " but ", tensors.begin()->first, " is on ", first.device(),
                      "; all inputs must be on the same device (the op does not move tensors)");
  }
  // Only reachable by calling a kernel directly (redispatch): the dispatcher picks the kernel
  // from the inputs' device.
  TORCH_CHECK_VALUE(first.device().type() == kernel_device, op, ": inputs are on ",
                    first.device(), " but this is the ", c10::DeviceTypeName(kernel_device),
                    " kernel");
}

namespace {

bool is_label_dtype(at::ScalarType t) {
  switch (t) {
    case at::kByte:
    case at::kChar:
    case at::kShort:
    case at::kInt:
    case at::kLong:
      return true;
    default:
      return false;
  }
}

}  // namespace

void check_labels_shape(const char* op, const at::Tensor& acts, const at::Tensor& labels) {
  TORCH_CHECK_VALUE(labels.dim() == 4, op, ": labels must be [N, P, sh, sw], got shape ",
                    labels.sizes());
  TORCH_CHECK_VALUE(is_label_dtype(labels.scalar_type()), op,
                    ": labels must be an integer tensor (uint8, int8, int16, int32 or int64), "
                    "got ",
                    c10::getDtypeNames(labels.scalar_type()).first);
  TORCH_CHECK_VALUE(labels.size(0) == acts.size(0), op, ": acts has ", acts.size(0),
                    " images but labels has ", labels.size(0));
}

void check_num_labels(const char* op, int64_t num_labels) {
  TORCH_CHECK_VALUE(num_labels >= 1 && num_labels <= kMaxLabels, op,
                    ": num_labels must lie in [1, ", kMaxLabels, "] (label 0 = none), got ",
                    num_labels);
}

void check_maps_not_empty(const char* op, const at::Tensor& acts, const at::Tensor& labels) {
  const bool has_pixels = labels.size(2) * labels.size(3) > 0;
  TORCH_CHECK_VALUE(!has_pixels || (acts.size(2) > 0 && acts.size(3) > 0), op,
                    ": activation maps must not be empty, got shape ", acts.sizes());
  // Kernels index a map and an image's labels with int32.
  TORCH_CHECK_VALUE(acts.size(2) * acts.size(3) < std::numeric_limits<int32_t>::max(), op,
                    ": activation maps must have fewer than 2^31 - 1 values, got shape ",
                    acts.sizes());
  TORCH_CHECK_VALUE(
      labels.size(1) * labels.size(2) * labels.size(3) < std::numeric_limits<int32_t>::max(), op,
      ": too many label entries per image");
}

void check_contiguous(const char* op, std::initializer_list<NamedTensor> tensors) {
  for (const auto& [name, t] : tensors)
    TORCH_CHECK(t->is_contiguous(), op, ": ", name,
                " must be contiguous (the Python wrappers in ndcore.ops convert inputs)");
}

std::vector<at::Tensor> minmax(const at::Tensor& t) {
  const auto [lo, hi] = at::aminmax(t);
  return {lo, hi};
}

std::vector<int64_t> to_host(const std::vector<at::Tensor>& scalars) {
  if (scalars.empty()) return {};
  std::vector<int64_t> out;
  if (scalars.front().is_cpu()) {  // no copy to make: read each (item converts to int64)
    for (const at::Tensor& s : scalars) out.push_back(s.item<int64_t>());
    return out;
  }
  std::vector<at::Tensor> flat;
  flat.reserve(scalars.size());
  for (const at::Tensor& s : scalars) flat.push_back(s.to(at::kLong).reshape({1}));
  const at::Tensor host = at::cat(flat).cpu();  // the only sync of the checks
  const int64_t* p = host.data_ptr<int64_t>();
  out.assign(p, p + host.numel());
  return out;
}

void check_label_range(const char* op, int64_t lo, int64_t hi, int64_t num_labels) {
  TORCH_CHECK_VALUE(lo >= 0 && hi < num_labels, op, ": label values must lie in [0, ",
                    num_labels, "), got [", lo, ", ", hi, "]");
}

at::Tensor narrow_labels(const at::Tensor& labels) {
  return labels.to(at::kInt).contiguous();
}

}  // namespace ndcore
