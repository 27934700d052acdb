// Input checks shared by every ndcore op and by both of its kernels (CPU and CUDA), so that the
// two devices accept and reject exactly the same inputs with the same messages. The Python
// mirror of these rules (same order, same messages) is ndcore/ops/checks.py; keep them in step.
//
// Convention: a bad argument raises ValueError in Python (TORCH_CHECK_VALUE), including a device
// mismatch: the ops never move tensors between devices.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

namespace ndcore {

// Largest num_labels: label values are narrowed to int32 once validated, so every valid label
// must fit. Category indices are int32 in the kernels too.
constexpr int64_t kMaxLabels = 2147483647;
constexpr int64_t kMaxCategories = 2147483647;

using NamedTensor = std::pair<const char*, const at::Tensor*>;

// Every tensor on the device of the first (acts), device index included, and that device of
// the kernel's type.
void check_same_device(const char* op, std::initializer_list<NamedTensor> tensors,
                       c10::DeviceType kernel_device);

// labels: [N, P, sh, sw] of an integer dtype (uint8, int8, int16, int32 or int64), with N images
// like acts, and P * sh * sw < 2^31 (kernels index an image's labels with int32).
void check_labels_shape(const char* op, const at::Tensor& acts, const at::Tensor& labels);

void check_num_labels(const char* op, int64_t num_labels);

// Activation maps must not be empty when there are pixels to produce; maps and an image's labels
// must have fewer than 2^31 - 1 entries.
void check_maps_not_empty(const char* op, const at::Tensor& acts, const at::Tensor& labels);

void check_contiguous(const char* op, std::initializer_list<NamedTensor> tensors);

// Min and max of a tensor (numel > 0) as two 0-d tensors on its device.
std::vector<at::Tensor> minmax(const at::Tensor& t);

// The values of 0-d tensors (all on one device) as int64, read with one device-to-host
// transfer (one sync) on CUDA.
std::vector<int64_t> to_host(const std::vector<at::Tensor>& scalars);

// Label values lo..hi (the labels' min and max) in [0, num_labels).
void check_label_range(const char* op, int64_t lo, int64_t hi, int64_t num_labels);

// labels as contiguous int32, the kernels' type; only call after check_label_range, which makes
// the narrowing exact.
at::Tensor narrow_labels(const at::Tensor& labels);

}  // namespace ndcore
