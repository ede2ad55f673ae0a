# drepo — see README.md. Two commands on a fresh Debian machine with Go:
#   make demo   runs the main job on the embedded default
#   make test   installs what the tests need when it is missing, then runs lint and the suite
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 5m
SCENARIOS   ?= hash
RUNS        ?= 3
# Debian packages the tests use (real servers and tools, never mocks)
TEST_PKGS   := apache2 apache2-utils litmus minisign rclone curl openssl iproute2 nftables jq
# nfpm builds the .deb (make package; its test checks the package)
NFPM_VERSION := v2.45.2
NFPM        ?= $(shell $(GO) env GOPATH)/bin/nfpm
# the benchmark compares with these too
BENCH_PKGS  := aria2
DEPS_PKGS   ?= $(TEST_PKGS)

.PHONY: all build test demo bench fuzz lint deps package clean

all: build

# drepo version prints what git says of the checkout (tag or commit, -dirty if changed).
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/drepo ./cmd/drepo
	$(GO) build -o bin/drepo-bench ./cmd/drepo-bench

# deps installs missing Debian packages (as root, or through sudo when there is one).
deps:
	@missing=""; for p in $(DEPS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "make: cannot install$$missing (not root, no sudo); tests that need them will skip"; exit 0; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# test runs the suite with go test -json (kept in bin/test.json): each package's result as
# it ends, then the output of every failed test, then how many passed, skipped and failed.
JQ_LIVE    := . as $$l | (try fromjson catch null) as $$j | if $$j == null then $$l + "\n" elif $$j.Action == "build-output" then $$j.Output elif $$j.Action == "output" and $$j.Test == null and ($$j.Output | test("^(ok|FAIL|panic|\\?)")) then $$j.Output else empty end
JQ_SUMMARY := [split("\n")[] | fromjson? | select(.Test != null)] as $$e | ($$e | map(select(.Action == "fail") | .Package + " " + .Test)) as $$failed | ($$e | map(select(.Action == "output" and ((.Package + " " + .Test) as $$k | $$failed | index($$k) != null)) | .Output) | join("")), "tests: \($$e | map(select(.Action == "pass")) | length) passed, \($$e | map(select(.Action == "skip")) | length) skipped, \($$failed | length) failed"
test: deps lint
	@[ -x "$(NFPM)" ] || { echo "make: installing nfpm $(NFPM_VERSION) (make package)"; $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION); }
	@mkdir -p bin; echo "$(GO) test -count=1 -timeout 20m ./..."; \
	$(GO) test -count=1 -timeout 20m -json ./... 2>&1 | tee bin/test.json | jq --unbuffered -Rrj '$(JQ_LIVE)'; \
	jq -Rrs '$(JQ_SUMMARY)' bin/test.json; \
	! jq -Rre 'fromjson? | select(.Action == "fail")' bin/test.json >/dev/null && ! grep -q '^FAIL\|^panic\|build failed' bin/test.json

# demo: the main job on the embedded default, in a temporary folder: keygen, manifest,
# (each daemon's log file exists before the daemon starts, and the demo waits for its
# ready line: reading a log not yet made failed one run in eight)
# drepo serve on a free loopback port, sync to a repository and a staging one (-1),
# verify --deep, ls, a second sync that finds nothing to do, then a device fetch (the
# staging repository skipped) laid out in a folder, and its files listed.
demo: build
	@set -e; d=$$(mktemp -d); srv=""; trap '[ -n "$$srv" ] && kill $$srv 2>/dev/null; rm -rf "$$d"' EXIT; \
	echo "== drepo keygen"; bin/drepo keygen --out $$d/demo >/dev/null; \
	echo "== drepo manifest build testdata/apps/hello/1.0"; \
	bin/drepo manifest build testdata/apps/hello/1.0 --app hello --version 1.0 -o $$d/manifest.json; \
	bin/drepo manifest show $$d/manifest.json; \
	echo "== drepo serve"; mkdir -p $$d/dav; \
	DEMO_PW=demo-password bin/drepo htpasswd --password-env DEMO_PW $$d/htpasswd demo 2>/dev/null; \
	: > $$d/serve.log; bin/drepo serve --root $$d/dav --htpasswd $$d/htpasswd --listen 127.0.0.1:0 2>>$$d/serve.log & srv=$$!; \
	for i in $$(seq 100); do url=$$(sed -n 's/.*serving WebDAV" url=\([^ ]*\).*/\1/p' $$d/serve.log); [ -n "$$url" ] && break; sleep 0.1; done; \
	[ -n "$$url" ] || { cat $$d/serve.log; exit 1; }; echo "serving $$url"; \
	printf 'source: %s\nsigning_key: demo.key\ntrusted_keys: [demo.pub]\nstate_dir: state\nstore: store\npeers: {broadcast: false}\nrepositories:\n  - {name: main, url: "%smain/", priority: 10, username: demo, password_env: DEMO_PW}\n  - {name: staging, url: "%sstaging/", priority: -1, username: demo, password_env: DEMO_PW}\n' \
	  "$(CURDIR)/testdata/apps" "$$url" "$$url" > $$d/drepo.yaml; \
	export DEMO_PW=demo-password DREPO_CONFIG=$$d/drepo.yaml; \
	echo "== drepo sync --init (the repositories are new folders)"; bin/drepo --log-level warn sync --init; \
	echo "== drepo verify --deep"; bin/drepo --log-level warn verify --deep; \
	echo "== drepo ls --repo main"; bin/drepo ls --repo main; \
	echo "== drepo sync (nothing changed)"; bin/drepo --log-level warn sync; \
	echo "== drepo fetch hello@1.0 --plan"; bin/drepo fetch hello@1.0 --plan; \
	echo "== drepo fetch hello@1.0 --out out"; bin/drepo --log-level warn fetch hello@1.0 --out $$d/out; \
	echo "== drepo store ls"; bin/drepo store ls; \
	echo "== fetched files"; (cd $$d/out && find . -type f -exec ls -l {} + | sed 's|  *| |g'); \
	echo "== drepo peer (the first device shares its store on 127.0.0.1; broadcast off)"; \
	: > $$d/peer.log; bin/drepo peer --host 127.0.0.1 --http-port 0 --https-port 0 --discovery-port 0 2>>$$d/peer.log & peer=$$!; \
	trap '[ -n "$$srv" ] && kill $$srv 2>/dev/null; kill $$peer 2>/dev/null; rm -rf "$$d"' EXIT; \
	for i in $$(seq 100); do disco=$$(sed -n 's/.*peer ready.*discovery=\([^ ]*\).*/\1/p' $$d/peer.log); [ -n "$$disco" ] && break; sleep 0.1; done; \
	[ -n "$$disco" ] || { cat $$d/peer.log; exit 1; }; echo "peer discovery on $$disco"; \
	echo "== the repository server stops"; kill $$srv; wait $$srv 2>/dev/null || true; srv=""; \
	printf 'trusted_keys: [demo.pub]\nstore: store2\npeers: {broadcast: false, static: ["%s"]}\nrepositories:\n  - {name: main, url: "%smain/", priority: 10}\n' "$$disco" "$$url" > $$d/device2.yaml; \
	echo "== drepo fetch hello@1.0 on a second device (from the peer)"; \
	DREPO_CONFIG=$$d/device2.yaml bin/drepo --log-level error fetch hello@1.0 --out $$d/out2; \
	echo "== files on the second device"; (cd $$d/out2 && find . -type f -exec ls -l {} + | sed 's|  *| |g'); \
	echo "== demo done"

# bench: SCENARIOS=hash by default; all: hash serve-put serve-get sync-2g many-first many-noop
# many-verify fetch-2g. The sync scenarios compare with a current rclone, built here once if missing
# (Debian's 1.60 pauses 10 ms between requests).
RCLONE_VERSION ?= v1.76.0
bench: build
	@$(MAKE) --no-print-directory deps DEPS_PKGS="$(TEST_PKGS) $(BENCH_PKGS)"
	@mkdir -p bench-out
	@if ! $$(go env GOPATH)/bin/rclone version 2>/dev/null | grep -q "$(RCLONE_VERSION)"; then \
	  echo "make: building rclone $(RCLONE_VERSION) for the sync scenarios"; \
	  $(GO) install github.com/rclone/rclone@$(RCLONE_VERSION); fi
	RCLONE=$$(go env GOPATH)/bin/rclone bin/drepo-bench --runs $(RUNS) --json bench-out/bench.json $(SCENARIOS)

# fuzz runs every fuzz target for FUZZTIME each (corpus: <package>/testdata/fuzz/).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t ($(FUZZTIME))"; $(GO) test $$pkg -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME); \
	  done; done

# package: bin/drepo_<version>_<arch>.deb with nfpm (cmd/drepo/packaging/nfpm.yaml): the
# binary, systemd units, an example /etc/drepo/drepo.yaml (a conffile), the man page and
# shell completions (generated into bin/pkg). PKG_OUT is where the .deb goes.
PKG_OUT     ?= bin
DREPO_PKG   := bin/pkg
# a Debian version starts with a digit and has no '-' here: v1.2.3 → 1.2.3, a commit → 0~git<commit>
PKG_VERSION ?= $(shell (git describe --tags --always --dirty 2>/dev/null || echo dev) | sed -e 's/^v\([0-9]\)/\1/;t' -e 's/^/0~git/' | sed -e 's/-/+/g')
package: build
	@[ -x "$(NFPM)" ] || { echo "make: installing nfpm $(NFPM_VERSION)"; $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION); }
	mkdir -p $(DREPO_PKG) $(PKG_OUT)
	cp bin/drepo $(DREPO_PKG)/drepo
	bin/drepo man | gzip -9n > $(DREPO_PKG)/drepo.1.gz
	bin/drepo completion bash > $(DREPO_PKG)/drepo.bash
	bin/drepo completion zsh > $(DREPO_PKG)/_drepo
	bin/drepo completion fish > $(DREPO_PKG)/drepo.fish
	DREPO_VERSION=$(PKG_VERSION) DREPO_ARCH=$$($(GO) env GOARCH) $(NFPM) package -f cmd/drepo/packaging/nfpm.yaml -p deb -t $(PKG_OUT)/

clean:
	rm -rf bin bench-out
