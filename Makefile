# The README's two commands: `make app` (set up, then open the explorer) and `make test`.
.PHONY: setup app test bench

# see pcdviz/cli.py: spinning OpenMP threads crawl on a shared machine
export OMP_WAIT_POLICY ?= PASSIVE

setup:
	scripts/setup.sh

app: setup
	.venv/bin/python app.py

test:
	scripts/setup.sh --test
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/python -m pcdviz.cli bench
