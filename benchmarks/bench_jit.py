"""Benchmark of the first-use (JIT) build of the op: compile time of the CPU build into an empty
cache, and the import time of the cached build (vs. the prebuilt ndcore._C) in a new process.

    python benchmarks/bench_jit.py [--compiles 1] [--imports 5] [--no-write]

Each measure runs in a fresh process (`import ndcore.ops` after `import torch`), with
NDCORE_FORCE_JIT=1 (the prebuilt is ignored) and NDCORE_FORCE_CPU=1 (CPU kernels only) for the
JIT rows. Reports medians; the section "bench_jit (cpu)" of benchmarks/RESULTS.md is rewritten
(unless --no-write).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import report  # noqa: E402

# Times `import ndcore.ops` alone: torch is imported first (its own cost is not ndcore's).
SNIPPET = """
import json, time
import torch
t = time.perf_counter()
import ndcore.ops as ops
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "path": ops.extension_info(detailed=True)["path"]}))
"""


def timed_import(env: dict) -> Tuple[float, float, str]:
    """(process wall seconds, seconds of `import ndcore.ops`, the op's load path)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench_jit: the import failed:\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return wall, out["seconds"], out["path"]


def torch_version() -> str:
    import torch

    return f"{torch.__version__} (CUDA build {torch.version.cuda or 'no'})"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compiles", type=int, default=1, help="first-use builds to time")
    parser.add_argument("--imports", type=int, default=5, help="cached imports to time")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)

    base = {k: v for k, v in os.environ.items()
            if k not in ("NDCORE_ALLOW_SLOW", "NDCORE_FORCE_JIT", "NDCORE_CACHE_DIR")}
    load = os.getloadavg()[0]  # the compile's time depends on what else runs
    compiles, cache = [], None
    for _ in range(args.compiles):
        cache = tempfile.mkdtemp(prefix="ndcore-bench-jit-")
        env = {**base, "NDCORE_FORCE_JIT": "1", "NDCORE_FORCE_CPU": "1",
               "NDCORE_CACHE_DIR": cache, "NDCORE_REQUIRE_EXTENSION": "1"}
        wall, seconds, path = timed_import(env)
        assert path == "jit", path
        compiles.append((wall, seconds))
        if len(compiles) < args.compiles:
            shutil.rmtree(cache, ignore_errors=True)
    cached = [timed_import(env) for _ in range(args.imports)]
    assert all(path == "jit" for *_, path in cached)
    prebuilt = [timed_import({**base, "NDCORE_REQUIRE_EXTENSION": "1"})
                for _ in range(args.imports)]
    assert all(path == "prebuilt" for *_, path in prebuilt), prebuilt

    shutil.rmtree(cache, ignore_errors=True)
    med = statistics.median
    rows = [
        ("first use: compile (CPU kernels) + import, `import ndcore.ops`",
         f"{med(s for _, s in compiles):.1f} s (median of {len(compiles)})"),
        ("first use: whole process (python, torch, compile)",
         f"{med(w for w, _ in compiles):.1f} s"),
        ("cached JIT build: `import ndcore.ops`",
         f"{med(s for _, s, _ in cached) * 1000:.0f} ms (median of {len(cached)})"),
        ("cached JIT build: whole process", f"{med(w for w, _, _ in cached):.2f} s"),
        ("prebuilt ndcore._C: `import ndcore.ops`",
         f"{med(s for _, s, _ in prebuilt) * 1000:.0f} ms (median of {len(prebuilt)})"),
        ("prebuilt ndcore._C: whole process", f"{med(w for w, _, _ in prebuilt):.2f} s"),
    ]
    report(rows, "bench_jit (cpu)", "bench_jit.py", argv if argv is not None else sys.argv[1:],
           note=(f"load average {load:.1f} on {os.cpu_count()} cores when the compile "
                 f"started (ninja, one job per core); torch {torch_version()}"),
           write=not args.no_write)


if __name__ == "__main__":
    main()
