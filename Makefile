# `make demo` and `make test` do the whole set-up: a virtual environment in .venv (or the active one), then the work.
PYTHON ?= python3
VENV := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY := $(VENV)/bin/python
SAMPLE := dataset/oxford-iiit-pet-sample
# glibc otherwise returns large activation buffers to the OS and faults them back in every step
# (1.3x to 1.5x slower CPU training at 256x256; see BENCHMARKS.md). It must be set before Python starts.
export GLIBC_TUNABLES ?= glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184

.PHONY: install test test-fast demo reproduce-quick clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-onnx.txt requirements-openvino.txt \
		requirements-submitit.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

test: install
	$(PY) -m pytest -q tests

# Leaves out the tests marked slow (whole training runs, sweeps, torchrun, the benchmark): for quick loops.
test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

demo: install
	$(PY) src/train.py --data_path $(SAMPLE) --model_type ResNet34_Unet --image_size 128 -e 8 -b 8 -lr 1e-3 \
		--save_dir saved_models/demo --log_dir checkpoints/demo --overwrite
	$(PY) src/inference.py --data_path $(SAMPLE) --model saved_models/demo/ResNet34_Unet_bs8_best_model.pth \
		--log_dir checkpoints/demo --visualize
	@echo
	@echo "Demo finished. Outputs:"
	@echo "  best model     saved_models/demo/ResNet34_Unet_bs8_best_model.pth"
	@echo "  resumable      saved_models/demo/ResNet34_Unet_bs8_last.pth"
	@echo "  history        checkpoints/demo/ResNet34_Unet_bs8_history.json"
	@echo "  test results   checkpoints/demo/inference_result.csv"
	@echo "  per image      checkpoints/demo/*_per_image.csv (python src/analyze.py FILE: where the model fails)"
	@echo "  pictures       checkpoints/demo/vis_result_*.png"

reproduce-quick: install
	$(PY) src/reproduce.py --quick --out reports/quick
