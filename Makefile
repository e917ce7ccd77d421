# make demo        set up the core only (torch, numpy, OpenCV), then refine the shipped samples
#                  (segrefine_plugins/samples) and write pictures to outputs/demo
# make test        set up everything (mmcv build, mmseg, detectron2), then run the tests (CI)
# make setup-core  create / reuse the environment with the core only
# make setup       create / reuse the environment with everything (tools/setup_env.sh)
# SEGREFINE_VENV   where the environment lives (default ~/.cache/segrefine/venv)
# SEGREFINE_DATA   the data sets the data tests read (default ../shared/data)
SEGREFINE_VENV ?= $(HOME)/.cache/segrefine/venv
PY := $(SEGREFINE_VENV)/bin/python
export SEGREFINE_VENV

.PHONY: setup setup-core test demo
setup:
	bash tools/setup_env.sh

setup-core:
	bash tools/setup_env.sh core

test: setup
	$(PY) -m pytest -q

demo: setup-core
	$(SEGREFINE_VENV)/bin/segrefine demo --out outputs/demo
