# Two commands do everything: `make run` (the app) and `make test` (the tests). The rest are extras.
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: run test setup test-slow test-all serve bench clean help

help:
	@echo "make run        prepara tudo (venv, llama.cpp, modelo, corpus) e abre o app em http://$(HOST):$(PORT)"
	@echo "make test       prepara o necessário e roda os testes rápidos"
	@echo "make test-slow  roda os testes lentos (modelo 0.5B, fine-tune curto, benchmark)"
	@echo "make serve      API compatível com OpenAI (llama_cpp.server) em http://127.0.0.1:8000/v1"

setup:
	@bash scripts/bootstrap.sh

run: setup
	$(PY) app.py --host $(HOST) --port $(PORT)

test: setup
	@bash scripts/ensure_chromium.sh
	$(PY) -m models fetch smollm2-135m-instruct --quiet
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

test-all: setup
	$(PY) -m pytest -m "slow or not slow"

serve: setup
	$(PY) -m models serve

bench: setup
	$(PY) benchmarks/runtime.py

clean:
	rm -rf $(VENV) .pytest_cache
