"""The latent of each probe index: z_i ~ N(0, I), a pure function of (seed, i).

Seeding per index, not per batch, is what makes a generator's probe set shardable and
resumable: whichever rank, batch or worker draws sample i, it gets the same z.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch


def latents(indices: Sequence[int], shape: Tuple[int, ...], seed: int) -> torch.Tensor:
    """float32 [len(indices), *shape]: sample i drawn from numpy's PCG64 seeded with (seed, i)."""
    out = np.empty((len(indices), *shape), dtype=np.float32)
    for k, i in enumerate(indices):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(i)])))
        out[k] = rng.standard_normal(shape, dtype=np.float32)
    return torch.from_numpy(out)
