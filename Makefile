# Access Fabric — thin targets over npm scripts and hack/. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

STAMP := node_modules/.install-stamp

help: ## list targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): package.json package-lock.json
	bash hack/install.sh
	@touch $(STAMP)

install: $(STAMP) ## install npm packages (embedded PostgreSQL included)

build: install ## build the precompiled agent and fabricctl, dist/ (bin/fabric-agent and bin/fabricctl also rebuild them when stale)
	node hack/build-agent.mjs
	node hack/build-fabricctl.mjs

run: install ## run the control plane on its embedded defaults (state in .fabric/)
	./bin/fabric-controlplane $(ARGS)

test: install ## run the whole test suite (type check, generated-file drift, unit, integration, e2e)
	bash hack/test.sh

test-e2e: install ## run only the end-to-end tests (real agent and control-plane processes)
	FABRIC_TEST_SPEC='test/e2e/**/*.test.ts' bash hack/test.sh

generate: install ## rebuild crds/, OpenAPI documents, TypeScript types and the API reference from schemas/
	npm run --silent generate

verify: install ## fail when generated files drift from schemas/
	bash hack/verify.sh

lint: install ## type-check everything (strict)
	npx tsc --noEmit -p tsconfig.json

bench: install ## run benchmarks and print figures (see docs/benchmarks.md)
	bash hack/bench.sh

.PHONY: help install build run test test-e2e generate verify lint bench
