# Tether: make help lists the targets.
GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/tetherhq/tether/internal/version.Version=$(VERSION)
BINARIES := tether tether-edge tether-agent
# Agent cross-builds: GOOS/GOARCH[/GOARM or GOMIPS].
DIST_TARGETS := linux/amd64 linux/arm64 linux/arm/7 linux/arm/6 linux/mipsle/softfloat linux/riscv64

.PHONY: help build test fmt-check vet deps-check bench demo dist clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-11s %s\n", $$1, $$2}'

build: ## build tether, tether-edge and tether-agent into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

test: fmt-check vet deps-check ## gofmt, go vet, import layering, and every test under -race
	$(GO) test -race -count=1 -timeout 20m ./...

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet ./...

deps-check: ## fail if a package imports against the layering
	@./scripts/deps-check.sh

bench: ## run the benchmarks and write BENCHMARKS.md (never part of make test)
	@./scripts/bench.sh

demo: build ## edge + agent + a real session on loopback, with a generated PKI (KEEP=1 leaves them running)
	@./scripts/demo.sh

dist: ## cross-build static, stripped tether-agent binaries into dist/
	@mkdir -p dist
	@for t in $(DIST_TARGETS); do \
	  os=$$(echo $$t | cut -d/ -f1); arch=$$(echo $$t | cut -d/ -f2); extra=$$(echo $$t | cut -s -d/ -f3); \
	  name=tether-agent-$$os-$$arch; env="GOOS=$$os GOARCH=$$arch CGO_ENABLED=0"; \
	  case $$arch in arm) env="$$env GOARM=$$extra"; name=$$name"v$$extra";; mipsle) env="$$env GOMIPS=$$extra";; esac; \
	  env $$env $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/$$name ./cmd/tether-agent || exit 1; \
	  printf '  %-32s %8d bytes\n' $$name $$(stat -c %s dist/$$name); \
	done

clean: ## remove build outputs
	rm -rf $(BIN) dist
