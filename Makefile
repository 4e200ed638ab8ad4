# Two commands do everything on a fresh machine (they build .venv themselves):
#   make demo   - export the built-in demo models into ./registry
#   make test   - run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: env demo test test-slow bench protos clean cc

env: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tf_bigexport demo --registry ./registry

# Two workers: one per core; each starts its own emulators on free loopback ports.
test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m bench

# The C++ loader for saved_model.pb/.cpb and its runner (cc/), built with g++ against
# the TensorFlow wheel in .venv; outputs under build/cc/ (see cc/Makefile).
cc: $(STAMP)
	@$(MAKE) --no-print-directory -f cc/Makefile PYTHON=$(PY)

# Regenerates the checked-in protobuf modules from imageformat/proto/*.proto.
# protoc names modules after paths, so it runs over a tf_bigexport/ view of the tree.
PROTO_VIEW := build/proto-view
protos: $(STAMP)
	rm -rf $(PROTO_VIEW) && mkdir -p $(PROTO_VIEW)/tf_bigexport
	ln -s $(CURDIR)/imageformat $(PROTO_VIEW)/tf_bigexport/imageformat
	$(PY) -m grpc_tools.protoc -I$(PROTO_VIEW) --python_out=$(PROTO_VIEW) --pyi_out=$(PROTO_VIEW) \
	    tf_bigexport/imageformat/proto/versions.proto tf_bigexport/imageformat/proto/chunk.proto
	rm -rf $(PROTO_VIEW)

clean:
	rm -rf $(VENV) build *.egg-info
