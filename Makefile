PY := .venv/bin/python

.PHONY: setup test lint demo

setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

demo: setup
	$(PY) tools/main_job.py
