# The command index. Each target is one stage of scripts/test.sh, or the script it runs;
# `make help` lists them. Options for demo and bench go in ARGS:
#   make bench ARGS="--rounds 3 --only startup"
SHELL := /bin/bash
.DEFAULT_GOAL := help
ARGS ?=

.PHONY: help install check test e2e layer sam demo fuzz bench ci

help: ## list the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z0-9-]*:.*## / { printf "  make %-8s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

install: ## install the pinned test tools into .tools/ (apt, rustup targets, pip, npm)
	scripts/test.sh install

check: ## cargo fmt --check, clippy -D warnings, cargo doc -D warnings
	scripts/test.sh check

test: ## plain cargo test: no outside tools; says how many tests it left ignored
	scripts/test.sh unit

e2e: ## every test of the workspace, the ignored ones included (after make install)
	scripts/test.sh e2e

layer: ## build and check both layer zips (layer/dist/)
	scripts/test.sh layer

sam: ## check template.yaml and sam build it, offline
	scripts/test.sh sam

demo: ## the README's main command (ARGS: contrail-sim run options)
	scripts/demo.sh $(ARGS)

fuzz: ## the fuzz targets, 5 s each (ARGS: scripts/fuzz.sh options, e.g. --runs 10000000 mapper)
	scripts/fuzz.sh $(ARGS)

bench: ## the benchmarks, written to docs/BENCHMARKS.md (ARGS: contrail-bench options)
	scripts/bench.sh $(ARGS)

ci: ## the whole suite, as CI runs it (.ci/run): install check layer sam demo e2e fuzz
	scripts/test.sh
