# make setup   create / reuse the environment (tools/setup_env.sh)
# make test    set up, then run the test suite (what CI runs)
# make demo    set up, then refine the sample under $(DATA)/highres and write pictures
SEGREFINE_VENV ?= $(HOME)/.cache/segrefine/venv
DATA ?= ../shared/data
PY := $(SEGREFINE_VENV)/bin/python
export SEGREFINE_VENV

.PHONY: setup test demo
setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m pytest -q

demo: setup
	$(SEGREFINE_VENV)/bin/segrefine refine --image $(DATA)/highres/aeroplane.jpg \
	    --mask $(DATA)/highres/aeroplane_coarse.png --out outputs/demo --overlay
