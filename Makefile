# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv, install the pinned dependencies and build the extension first (once).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ndcore-installed
CUDA_HOME ?= $(if $(wildcard /usr/local/cuda/bin/nvcc),/usr/local/cuda,)
export CUDA_HOME
# Where a CUDA toolkit is present the CUDA kernel must compile (even with no GPU): fail otherwise.
NDCORE_FORCE_CUDA ?= $(if $(CUDA_HOME),1,)
export NDCORE_FORCE_CUDA

.PHONY: setup demo test test-fast browser bench paper clean

setup: $(STAMP)

$(STAMP): requirements-dev.txt pyproject.toml setup.py $(wildcard csrc/*.* csrc/*/*.*)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The real DCGAN the GAN tests dissect; --no-deps: its dependencies serve only its training.
	$(PY) -m pip install --quiet --no-deps gan-face-generate==1.1.1
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

demo: setup
	$(VENV)/bin/ndcore demo

# Headless Chromium for the browser tests (Debian packages; needs root, as on CI): the report's
# test runs chromium itself, GANPaint's drives it through chromium-driver (Selenium is pip's).
browser:
	@(command -v chromium && command -v chromedriver) >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)

test: setup browser
	NDCORE_REQUIRE_EXTENSION=1 $(PY) -m pytest -q

test-fast: setup
	NDCORE_REQUIRE_EXTENSION=1 $(PY) -m pytest -q -m "not slow and not browser"

bench: setup
	$(PY) benchmarks/bench_tally.py --quick
	$(PY) benchmarks/bench_dissect.py --quick

# The paper's findings on the synthetic world: trains small CNNs, dissects them as series and
# writes docs/paper-findings.md (examples/paper-findings; about 16 min on 2 shared CPU cores).
paper: setup
	$(PY) examples/paper-findings/study.py --out build/paper-findings

clean:
	rm -rf build $(VENV) ndcore/_C*.so *.egg-info

# The ndcore-mediapipe plugin's own tests (the face-parts segmenter); `make test` never needs
# mediapipe. mediapipe pins numpy<2, so its worker lives in its own venv ($(MP_VENV), ~1 GB,
# created once by the plugin's own command); the plugin goes into ndcore's venv without it.
MP_VENV ?= .venv-mediapipe
MP_PLUGIN := plugins/ndcore-mediapipe
MP_STAMP := $(MP_VENV)/.ndcore-mediapipe-installed

.PHONY: test-mediapipe

$(MP_STAMP): $(MP_PLUGIN)/ndcore_mediapipe/worker-requirements.txt $(MP_PLUGIN)/ndcore_mediapipe/env.py | setup
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e $(MP_PLUGIN)
	$(PY) -m ndcore_mediapipe.env --quiet $(MP_VENV)
	touch $@

test-mediapipe: setup $(MP_STAMP)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e $(MP_PLUGIN)
	NDCORE_MEDIAPIPE_PYTHON=$(abspath $(MP_VENV)) $(PY) -m pytest -q $(MP_PLUGIN)/tests
