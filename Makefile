# Tether: make help lists the targets.
GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X github.com/tetherhq/tether/internal/version.Version=$(VERSION) \
            -X github.com/tetherhq/tether/internal/version.Commit=$(COMMIT)
BINARIES := tether tether-edge tether-agent
# Agent cross-builds: GOOS/GOARCH[/GOARM or GOMIPS].
DIST_TARGETS := linux/amd64 linux/arm64 linux/arm/7 linux/arm/6 linux/mipsle/softfloat linux/riscv64
# The mipsle agent aligns its segments to 16 KiB, not Go's 64 KiB: the
# padding was 144 KiB of its 8 MiB budget. Kernels with 4 and 16 KiB pages
# load it (every mipsle router SoC we know of); one with 64 KiB pages
# would not.
MIPS_LDFLAGS := -R 0x4000
# The CLI runs where engineers are; the edge on servers.
CLI_TARGETS  := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
EDGE_TARGETS := linux/amd64 linux/arm64

.PHONY: vendor-web help build test cross-check fmt-check vet deps-check bench demo dist dist-agent dist-cli dist-edge dist-packages man clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n", $$1, $$2}'

build: ## build tether, tether-edge and tether-agent into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

# A race build makes the transport's socket calls through package syscall,
# for the detector (transport/rawsys_race_linux.go): the second run tests
# the raw calls themselves, as e2e's binaries use them.
test: fmt-check vet deps-check cross-check ## gofmt, go vet, import layering, cross-builds, and every test under -race
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run 'Raw|Splice|Socket' ./transport/

cross-check: ## build every binary for every platform it ships on; vet the CLI's packages for macOS and Windows
	@for t in $(CLI_TARGETS); do \
	  GOOS=$${t%/*} GOARCH=$${t#*/} CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/tether || { echo "cross-check: tether does not build for $$t"; exit 1; }; \
	done
	@for t in $(DIST_TARGETS); do \
	  os=$$(echo $$t | cut -d/ -f1); arch=$$(echo $$t | cut -d/ -f2); extra=$$(echo $$t | cut -s -d/ -f3); \
	  env="GOOS=$$os GOARCH=$$arch CGO_ENABLED=0"; \
	  case $$arch in arm) env="$$env GOARM=$$extra";; mipsle) env="$$env GOMIPS=$$extra";; esac; \
	  env $$env $(GO) build -o /dev/null ./cmd/tether-agent || { echo "cross-check: tether-agent does not build for $$t"; exit 1; }; \
	done
	@for t in $(EDGE_TARGETS); do \
	  GOOS=$${t%/*} GOARCH=$${t#*/} CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/tether-edge || { echo "cross-check: tether-edge does not build for $$t"; exit 1; }; \
	done
	@for os in darwin windows; do \
	  GOOS=$$os $(GO) vet ./cli/... ./pty/... ./cmd/tether/ || { echo "cross-check: go vet fails for $$os"; exit 1; }; \
	done

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet ./...

vendor-web: ## refresh web/vendor (xterm.js, asciinema-player) from npm at the versions and integrity hashes of web/vendor/VENDOR.txt
	@./scripts/vendor-web.sh

deps-check: ## fail if a package imports against the layering
	@./scripts/deps-check.sh

bench: ## run the benchmarks and write BENCHMARKS.md (never part of make test)
	@./scripts/bench.sh

demo: build ## edge + agent + a real session on loopback, with a generated PKI (KEEP=1 leaves them running)
	@./scripts/demo.sh

dist: dist-cli dist-agent dist-edge dist-packages ## cross-build every binary and the .deb and .rpm packages into dist/

dist-agent: ## static, stripped tether-agent binaries for its six architectures
	@mkdir -p dist
	@for t in $(DIST_TARGETS); do \
	  os=$$(echo $$t | cut -d/ -f1); arch=$$(echo $$t | cut -d/ -f2); extra=$$(echo $$t | cut -s -d/ -f3); \
	  name=tether-agent-$$os-$$arch; env="GOOS=$$os GOARCH=$$arch CGO_ENABLED=0"; \
	  ldflags='$(LDFLAGS)'; \
	  case $$arch in arm) env="$$env GOARM=$$extra"; name=$$name"v$$extra";; mipsle) env="$$env GOMIPS=$$extra"; ldflags="$$ldflags $(MIPS_LDFLAGS)";; esac; \
	  env $$env $(GO) build -trimpath -ldflags "$$ldflags" -o dist/$$name ./cmd/tether-agent || exit 1; \
	  printf '  %-32s %8d bytes\n' $$name $$(stat -c %s dist/$$name); \
	done

dist-cli: ## the tether CLI for Linux, macOS and Windows on amd64 and arm64
	@mkdir -p dist
	@for t in $(CLI_TARGETS); do \
	  os=$${t%/*}; arch=$${t#*/}; name=tether-$$os-$$arch; [ $$os = windows ] && name=$$name.exe; \
	  GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/$$name ./cmd/tether || exit 1; \
	  echo "  dist/$$name"; \
	done

dist-edge: ## static, stripped tether-edge binaries for Linux servers
	@mkdir -p dist
	@for t in $(EDGE_TARGETS); do \
	  os=$${t%/*}; arch=$${t#*/}; \
	  GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/tether-edge-$$os-$$arch ./cmd/tether-edge || exit 1; \
	  echo "  dist/tether-edge-$$os-$$arch"; \
	done

# Debian's armhf takes the ARMv6 agent, which runs on ARMv7 too (and on
# Raspberry Pi OS, whose armhf is ARMv6); RPM has armv6hl and armv7hl.
dist-packages: dist-agent dist-edge man ## .deb and .rpm of tether-agent and tether-edge, with their systemd units (nfpm)
	@for t in $(DIST_TARGETS); do \
	  arch=$$(echo $$t | cut -d/ -f2); extra=$$(echo $$t | cut -s -d/ -f3); name=tether-agent-linux-$$arch; \
	  formats="deb rpm"; case $$arch in arm) name=$$name"v$$extra"; arch=arm$$extra;; esac; \
	  [ $$arch = arm7 ] && formats=rpm; \
	  PACKAGERS="$$formats" ./scripts/package.sh agent $$arch dist/$$name $(VERSION) dist/packages >/dev/null || exit 1; \
	done
	@for t in $(EDGE_TARGETS); do \
	  ./scripts/package.sh edge $${t#*/} dist/tether-edge-linux-$${t#*/} $(VERSION) dist/packages >/dev/null || exit 1; \
	done
	@ls dist/packages | sed 's|^|  dist/packages/|'

man: build ## manual pages of tether, tether-edge and tether-agent into dist/man
	$(GO) run -ldflags '$(LDFLAGS)' ./internal/tools/mangen -bin $(BIN) -out dist/man

clean: ## remove build outputs
	rm -rf $(BIN) dist
