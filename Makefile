PY := .venv/bin/python

.PHONY: setup test lint demo gpu-check

setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

demo: setup
	$(PY) tools/main_job.py

# on a CUDA machine: CUDA tests, fixtures in fp16, fp16 latency, AMP steps (docs/precision.md)
gpu-check: setup
	$(PY) tools/gpu_check.py
