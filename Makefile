# Two commands do everything on a fresh machine (they build .venv themselves):
#   make demo   - export the built-in demo models into ./registry
#   make test   - run the test suite
# PYTHON may be any of Python 3.10 to 3.13, e.g. `make test PYTHON=python3.13`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# .installed: the project with TensorFlow (CPU) and the dev extras (`make test`);
# .installed-demo: only what the demo needs (`make demo`). pip prints its progress.
STAMP      := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: env demo test test-slow test-oldest test-compat bench protos dist clean cc

env: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(DEMO_STAMP): pyproject.toml setup.py | $(PY)
	@echo "Installing tf-bigexport and TensorFlow (CPU) into $(VENV); the first time downloads about 700 MB."
	$(PY) -m pip install -e '.[cpu]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml setup.py | $(PY)
	@echo "Installing tf-bigexport, TensorFlow (CPU) and the test tools into $(VENV)."
	$(PY) -m pip install -e '.[cpu,dev]'
	touch $(STAMP) $(DEMO_STAMP)

demo: $(DEMO_STAMP)
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

# Regenerates the checked-in protobuf modules from imageformat/proto/*.proto with
# protoc 25 (grpcio-tools 1.62, in its own venv): its modules have no runtime
# version check and load on every protobuf we support (4.25 for TensorFlow
# 2.15 to 2.17 up to 6.x). protoc names modules after paths, so it runs over a
# tf_bigexport/ view of the tree.
PROTO_VIEW := build/proto-view
PROTOC_VENV := build/protoc-venv
protos:
	test -x $(PROTOC_VENV)/bin/python || ($(PYTHON) -m venv $(PROTOC_VENV) && \
	    $(PROTOC_VENV)/bin/python -m pip install 'grpcio-tools==1.62.3')
	rm -rf $(PROTO_VIEW) && mkdir -p $(PROTO_VIEW)/tf_bigexport
	ln -s $(CURDIR)/imageformat $(PROTO_VIEW)/tf_bigexport/imageformat
	$(PROTOC_VENV)/bin/python -m grpc_tools.protoc -I$(PROTO_VIEW) --python_out=$(PROTO_VIEW) --pyi_out=$(PROTO_VIEW) \
	    tf_bigexport/imageformat/proto/versions.proto tf_bigexport/imageformat/proto/chunk.proto \
	    tf_bigexport/imageformat/proto/serving_warmup.proto
	rm -rf $(PROTO_VIEW)

# The whole suite on the oldest supported pair, TensorFlow 2.15 (Keras 2) on Python 3.10,
# in its own venv under .compat/; `make test` runs it on the newest TensorFlow.
test-oldest:
	$(PYTHON) tools/compat.py --full-suite --tf 2.15

# The project installed from its wheel in a fresh venv per supported TensorFlow
# (tools/compat.py; venvs under .compat/, about 2 GB each). TF="2.15 2.21" picks rows.
TF ?=
test-compat:
	$(PYTHON) tools/compat.py $(foreach v,$(TF),--tf $(v))

# sdist and wheel into dist/ (the wheel built from the sdist, which proves the sdist complete).
dist: $(STAMP)
	rm -rf dist && $(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV) build dist .compat *.egg-info
