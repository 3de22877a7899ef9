# Two commands do all set-up on a fresh machine:
#   make demo   - the main job on the embedded default data
#   make test   - the full test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fewtask-installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fewtask-train demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf runs build *.egg-info
