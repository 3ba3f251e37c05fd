# nodewright's entry points. `make test` is what CI runs (.ci/run).
SHELL := /usr/bin/env bash
BIN := $(CURDIR)/bin
CRDS := charts/nodewright/crds
GO_TEST_FLAGS ?=
# Two cores: one package's control plane at a time keeps the suite steady.
GO_TEST_P ?= 1

.PHONY: all tools iam-tools generate verify lint test unit chaos demo clean help

all: verify test

help: ## List targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

tools: ## Build the pinned control-plane binaries, kwok and controller-gen into bin/ (cached).
	@hack/build-tools.sh

# The IAM policy evaluator the end-to-end suites check the chart's policy with
# (test/iam): a Node.js package pinned by its lockfile, a test-time tool only.
IAM_EVALUATOR := test/iam/node_modules/.package-lock.json

iam-tools: $(IAM_EVALUATOR) ## Install the IAM policy evaluator into test/iam (npm ci; needs node >= 20).

$(IAM_EVALUATOR): test/iam/package.json test/iam/package-lock.json
	npm ci --prefix test/iam --no-audit --no-fund
	@touch $@

generate: tools ## Regenerate deepcopy code and CRDs from apis/.
	$(BIN)/controller-gen object paths=./apis/...
	$(BIN)/controller-gen crd paths=./apis/... output:crd:dir=$(CRDS)
	go run ./hack/crdpatch $(CRDS)

verify: tools ## Fail if generated files are stale, code is unformatted or vet complains.
	@hack/verify-generated.sh
	@$(MAKE) --no-print-directory lint

lint: ## gofmt and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go' ; git ls-files --others --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...

test: tools iam-tools ## Unit and control-plane tests (builds the tools when missing).
	@hack/test.sh -p $(GO_TEST_P) $(GO_TEST_FLAGS) ./...

# The chaos suite (test/chaos) is not part of `make test`: it runs every
# fault at once for minutes; `go test ./...` skips it without NODEWRIGHT_CHAOS.
chaos: tools ## Run the chaos suite: every fault at once on a 300-pod workload (minutes; logs in $TMPDIR/nodewright-chaos-*).
	NODEWRIGHT_CHAOS=1 go test -count=1 -timeout 20m -v $(GO_TEST_FLAGS) ./test/chaos

demo: tools ## Run the demo on a local control plane (DEMO_FLAGS=--keep to leave it up).
	go run ./test/demo $(DEMO_FLAGS)

unit: iam-tools ## Only the tests that need no control plane.
	@hack/test.sh -short ./...

clean: ## Remove build output except the cached tools.
	go clean -testcache
