// How the CUDA kernels cut their (image, unit, pixel) work into blocks. Plain C++ (no CUDA
// headers) so that tally.cpp can expose the plan to Python for the tests.
#pragma once

#include <cstdint>

namespace ndcore {
namespace cuda {

constexpr int kThreads = 256;  // threads per block of every ndcore kernel

struct LaunchPlan {
  int64_t blocks = 0;        // n_img * tiles * bands
  int units_per_block = 1;   // a tile of units
  int64_t tiles = 0;         // ceil(n_units / units_per_block)
  int bands = 1;             // bands of whole output rows per image
  int rows_per_band = 0;     // output rows of a band (the last one may be shorter)
};

// Fills the GPU: starts from `max_units` units per block and one band per image, then halves the
// units per block down to 1 and doubles the bands (keeping >= kThreads pixels per band) until
// there are >= 2 blocks per SM of device `device_index`, when the problem allows. Raises if the
// grid would be too large for one launch.
LaunchPlan plan_launch(int64_t n_img, int64_t n_units, int64_t sh, int64_t sw, int max_units,
                       int device_index);

}  // namespace cuda
}  // namespace ndcore
