# phoenix: build, test, lint, benchmarks, fuzzing and the lab.
# `make test` runs unit AND integration tests; the integration tests need a
# running Docker engine and fail (never skip) without one. .ci/run starts it.

GO       ?= go
FUZZTIME ?= 20s
LAB      := go run ./test/rig/cmd/lab
PHOENIX  := ./bin/phoenix
LABARGS  := --config .lab/phoenix_vm_configs.json --inventory .lab/inventory.yml
# phoenix version prints the commit it was built from: the Go toolchain
# stamps it in a git checkout, unless a Go env file turned that off.
BUILDVCS := -buildvcs=auto

.PHONY: build test lint bench bench-compare fuzz lab-up lab-down demo prereqs-demo prereqs-test

build:
	CGO_ENABLED=0 GOFLAGS="$(BUILDVCS)" $(GO) build -o bin/phoenix ./cmd/phoenix

# A fresh machine (Go and Docker only) gets what the rig needs first.
prereqs-demo:
	@.ci/prereqs demo

prereqs-test:
	@.ci/prereqs test

test: prereqs-test
	$(GO) test -count=1 -timeout 75m ./...

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Go benchmarks, the rig ones included (a fresh machine builds the rig's images first).
bench: prereqs-test
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

# phoenix and Ansible (and spot, where it can be fetched) side by side on one rig, N=10 no-op runs each.
bench-compare:
	test/bench/compare.sh

# One short run of every Fuzz target (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
			echo "== $$(dirname $$f) $$fn ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) "./$$(dirname $$f)"; \
		done; \
	done

lab-up: prereqs-demo
	$(LAB) up

lab-down:
	$(LAB) down

# Build the lab's fleet twice, template 9000 from the served cloud image, then
# VM 8101 cloned from it: the second run must change nothing.
demo: build lab-up
	$(PHOENIX) run create --all $(LABARGS)
	@echo "== second run: must report no change"
	@$(PHOENIX) run create --all $(LABARGS) --output json > .lab/second-run.jsonl
	@tail -n 1 .lab/second-run.jsonl
	@tail -n 1 .lab/second-run.jsonl | grep -q '"changed":0,' || { echo "demo: the second run changed something (see .lab/second-run.jsonl)"; exit 1; }
	@echo "== look inside:"
	@echo "  $(PHOENIX) exec 8101 $(LABARGS) -- findmnt"
	@echo "  docker exec -it $$(sed -n 's/^ *"id": "\(.*\)",$$/phoenix-rig-\1-vm-8101/p' .lab/rig.json) bash"
	@echo "  make lab-down   # removes it all"
