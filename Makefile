# Switchboard: `make run` serves the app, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
WORKERS ?= 1
export FLASK_APP := wsgi

.PHONY: install install-dev run serve migrate test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

static/vendor/socket.io.esm.min.js: node_modules/.package-lock.json
	mkdir -p static/vendor
	cp node_modules/socket.io-client/dist/socket.io.esm.min.js node_modules/socket.io-client/dist/socket.io.esm.min.js.map \
	   node_modules/socket.io-client/dist/socket.io.min.js node_modules/socket.io-client/dist/socket.io.min.js.map static/vendor/
	cp node_modules/markdown-it/dist/browser/markdown-it.esm.min.mjs static/vendor/markdown-it.esm.min.js

install: $(VENV)/.installed static/vendor/socket.io.esm.min.js

install-dev: install $(VENV)/.installed-dev

migrate: install
	$(BIN)/flask db upgrade

run: migrate serve

serve:
	$(BIN)/gunicorn --config gunicorn.conf.py --bind $(HOST):$(PORT) --workers $(WORKERS) wsgi:app

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-dev
	bash bench/run.sh
	$(BIN)/python bench/files_search.py

clean:
	rm -rf $(VENV) node_modules static/vendor .pytest_cache
