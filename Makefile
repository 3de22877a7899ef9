# Two commands do all set-up on a fresh machine:
#   make demo   - the main job on the embedded default data
#   make test   - the full test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fewtask-installed

.PHONY: demo test install clean wordnet

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q 'gymnasium[mujoco]>=1.0' cloudpickle
	$(PY) -m pip install -q --no-deps 'stable-baselines3>=2.3'
	touch $(STAMP)

install: $(STAMP) wordnet

# WordNet 3.0 for the ImageNet families: Debian's packages when missing and apt is usable
# as root; otherwise the WordNet tests skip and say how to install it.
wordnet:
	@test -f /usr/share/wordnet/data.noun || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] \
	  || (apt-get update -qq && apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null) \
	  || echo "note: could not install WordNet 3.0; ImageNet family tests will skip"

demo: $(STAMP)
	$(VENV)/bin/fewtask-train demo --out runs/demo

test: $(STAMP) wordnet
	$(PY) -m pytest -q

clean:
	rm -rf runs build *.egg-info
