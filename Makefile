# Two commands do everything on a fresh machine (they build .venv themselves):
#   make demo   - export the built-in demo models into ./registry
#   make test   - run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: env demo test test-slow bench protos clean

env: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pipeline demo --registry ./registry

# Two workers: one per core; each starts its own emulators on free loopback ports.
test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m bench

# Regenerates the checked-in protobuf modules from imageformat/proto/*.proto.
protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \
	    imageformat/proto/versions.proto imageformat/proto/chunk.proto

clean:
	rm -rf $(VENV) build *.egg-info
