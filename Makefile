# thinsr: build, test, demo and install. `make deps` installs what every other
# target needs on Debian; `make test` and `make demo` run it first.
PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift
SWIFT_FLAGS ?=
# C libraries with a static archive (sqlite, libaio) are linked in: fewer libraries
# to load and carry (make dist), fewer page faults at every start.
STATIC_LIBS = .build/static-libs
# Linked by lld with packed relative relocations (DT_RELR, glibc 2.36+; make dist carries its own
# glibc): the static stdlib's ~48,000 relocations shrink from a 1.1 MiB table to a few KiB, and a
# tool starts about 12% faster in the UML lab while staying position-independent.
RELEASE_FLAGS = -c release --static-swift-stdlib -Xswiftc -use-ld=lld -Xlinker -z -Xlinker pack-relative-relocs \
	-Xlinker -s -Xlinker -L$(CURDIR)/$(STATIC_LIBS)
SBINDIR = $(DESTDIR)$(PREFIX)/sbin
MANDIR = $(DESTDIR)$(PREFIX)/share/man/man8
BASHDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR = $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions
FISHDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
UNITDIR = $(DESTDIR)/lib/systemd/system
# The release's version: the commit count and hash (make dist).
DIST_VERSION ?= 0.1.$(shell git rev-list --count HEAD 2>/dev/null || echo 0)-$(shell git rev-parse --short HEAD 2>/dev/null || echo local)
TOOLS = thinsr-create thinsr-attach thinsr-detach thinsr-destroy thinsr-stat thinsr-ls thinsr-set \
        thinsr-extend thinsr-check thinsr-monitor thinsr-host \
        thinvdi-create thinvdi-destroy thinvdi-stat thinvdi-ls thinvdi-attach thinvdi-detach \
        thinvdi-snapshot thinvdi-clone thinvdi-revert thinvdi-compose thinvdi-resize thinvdi-set thinvdi-unset thinvdi-tree thinvdi-changed \
        thinvdi-data-destroy thinvdi-export thinvdi-import thinvdi-serve thinvdi-introduce thinvdi-forget thinvdi-hydrate \
        thinvdi-mirror thinvdi-mirror-stat thinvdi-mirror-stop

APT_PACKAGES = lvm2 thin-provisioning-tools libdevmapper-dev liblvm2-dev libaio-dev libsqlite3-dev \
        e2fsprogs util-linux udev kmod jq openssl fio strace python3 sqlite3 qemu-utils nbdkit libnbd-bin \
        user-mode-linux patchelf rpm
# Only for the QEMU lab (THINSR_LAB=qemu): a second kernel build, several CPUs.
QEMU_APT_PACKAGES = qemu-system-x86 linux-image-amd64 busybox-static
# Which kernel suite parts to run (default: all); e.g. make kernel-test PARTS="lineage faults".
PARTS ?=
# The man pages' date: the build's when reproducible builds set it, else the last commit's.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH
# The lab runs the release build: it starts faster there (static Swift stdlib).
RELEASE_BIN = $(shell $(SWIFT) build $(RELEASE_FLAGS) --show-bin-path 2>/dev/null)/thinsr

.PHONY: all deps deps-qemu release dist dist-check build lab-test test unit-test kernel-test demo man completions check-generated install install-plugins bench clean
PLUGINDIR = $(DESTDIR)/usr/libexec/xapi-storage-script
# Scheme scripts that resolve template URIs (file://, nbd://); a site adds its own beside them.
SCHEMEDIR = $(DESTDIR)/usr/libexec/xapi/storage

all: build

# Idempotent: installs only what is missing. With THINSR_LAB=qemu, the QEMU lab's too.
apt_install = missing=""; for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
deps:
	@$(call apt_install,$(APT_PACKAGES))
	@if [ "$${THINSR_LAB:-}" = qemu ]; then $(MAKE) -s deps-qemu; fi

deps-qemu:
	@$(call apt_install,$(QEMU_APT_PACKAGES))
	@command -v vng >/dev/null || { python3 -m pip install --quiet virtme-ng && (pyenv rehash 2>/dev/null || true); }

build:
	$(SWIFT) build $(SWIFT_FLAGS)

release: $(STATIC_LIBS)
	$(SWIFT) build $(RELEASE_FLAGS)

# Only the archives: the linker takes the first directory holding libNAME.so or .a.
$(STATIC_LIBS):
	mkdir -p $@ && for lib in libsqlite3.a libaio.a; do \
		for dir in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do \
			[ -e $$dir/$$lib ] && { ln -sf $$dir/$$lib $@/$$lib; break; }; done; done

# A release for any x86_64 dom0 (XCP-ng 8.3's glibc 2.17 included): .build/dist/ gets a
# tarball laid out as it installs under / and an RPM (packaging/dist.sh says how).
dist: deps release
	rm -rf .build/dist && mkdir -p .build/dist
	$(MAKE) -s install DESTDIR=$(CURDIR)/.build/dist/root PREFIX=/usr UNITDIR=$(CURDIR)/.build/dist/root/usr/lib/systemd/system
	packaging/dist.sh .build/dist/root $(DIST_VERSION)

# The release in an empty root, and the RPM's contents and needs (CI runs it).
dist-check: dist
	tests/host/dist-check.sh .build/dist

unit-test: build
	python3 -m unittest discover -s tests/xapi -p 'test_*.py'
	python3 tests/host/python36.py plugins
	tests/host/refusals.sh .build/debug/thinsr
	$(SWIFT) test $(SWIFT_FLAGS)

# The kernel suite against the real kernel: on this host if it has dm-thin,
# else in User-Mode Linux labs, two side by side (tests/kernel/run).
# A suite that stops early must not pass: its closing line is required.
kernel-test: release .build/bench-hello
	THINSR_BINARY="$(RELEASE_BIN)" tests/kernel/run $(PARTS)
	@tail -n 1 .build/vm-out/suite.log | grep -Eq '^kernel: [0-9]+ passed, 0 failed$$' || \
		{ echo "kernel suite did not finish cleanly (no closing line); see .build/vm-out/suite.log" >&2; exit 1; }

# The lab's own checks: statuses come back; a guest that panics, hangs or runs
# out of memory fails the run within its limit.
lab-test: build
	tests/vm/selftest.sh

test: deps build check-generated unit-test lab-test kernel-test dist-check

demo: deps release
	THINSR_BINARY="$(RELEASE_BIN)" tests/vm/run tests/demo.sh

man: build
	.build/debug/thinsr generate-manual man

completions: build
	.build/debug/thinsr generate-completions completions

# Man pages and completions are committed; fail if they are stale (the pages'
# .Dd line is the build's date, so it may differ).
check-generated: build
	@tmp=$$(mktemp -d) && mkdir -p $$tmp/man $$tmp/completions/bash $$tmp/completions/zsh $$tmp/completions/fish && \
	.build/debug/thinsr generate-manual $$tmp/man && .build/debug/thinsr generate-completions $$tmp/completions && \
	if diff -r -I '^\.Dd ' $$tmp/man man && diff -r $$tmp/completions completions; then echo "man pages and completions are current"; \
	else echo "man/ or completions/ is stale: run 'make man completions' and commit" >&2; rm -rf $$tmp; exit 1; fi; rm -rf $$tmp

# The SMAPIv3 plugins: one directory each, a link per method to the plugin's script.
install-plugins:
	install -d $(PLUGINDIR)/volume $(PLUGINDIR)/datapath
	install -d $(SCHEMEDIR) && install -m 0755 plugins/schemes/file plugins/schemes/nbd $(SCHEMEDIR)/
	for dir in volume/org.xen.xapi.storage.thinsr datapath/thinsr; do \
		rm -rf $(PLUGINDIR)/$$dir && cp -a plugins/$$dir $(PLUGINDIR)/$$dir && \
		rm -f $(PLUGINDIR)/$$dir/thinsr_xapi.py && install -m 0644 plugins/thinsr_xapi.py $(PLUGINDIR)/$$dir/; \
	done

install: install-plugins $(STATIC_LIBS)
	$(SWIFT) build $(RELEASE_FLAGS)
	install -d $(SBINDIR) $(MANDIR) $(BASHDIR) $(ZSHDIR) $(FISHDIR)
	install -m 0755 "$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/thinsr" $(SBINDIR)/thinsr
	# The installed pages are generated by the installed binary, dated from this build.
	pages=$$(mktemp -d) && $(SBINDIR)/thinsr generate-manual $$pages && \
	for tool in $(TOOLS); do \
		ln -sf thinsr $(SBINDIR)/$$tool; \
		install -m 0644 $$pages/$$tool.8 $(MANDIR)/$$tool.8; \
		install -m 0644 completions/bash/$$tool $(BASHDIR)/$$tool; \
		install -m 0644 completions/zsh/_$$tool $(ZSHDIR)/_$$tool; \
		install -m 0644 completions/fish/$$tool.fish $(FISHDIR)/$$tool.fish; \
	done; rm -rf $$pages
	# The pool monitor's unit, naming the binary where this install put it.
	install -d $(UNITDIR)
	sed 's|@SBINDIR@|$(PREFIX)/sbin|' systemd/thinsr-monitor.service.in > $(UNITDIR)/thinsr-monitor.service
	chmod 0644 $(UNITDIR)/thinsr-monitor.service

# The start-up floor the benchmark times beside the tools.
.build/bench-hello: bench/hello.swift
	mkdir -p .build && swiftc -O -static-stdlib bench/hello.swift -o $@

# Benchmarks: thinsr against LVM thin and the raw device, with the release build.
# `make bench BENCH_ARGS=--smoke` is the quick version the kernel suite runs.
bench: deps release dist .build/bench-hello
	THINSR_BINARY="$(RELEASE_BIN)" tests/vm/run bench/run.sh --dist $(CURDIR)/.build/dist/root $(BENCH_ARGS)
	mkdir -p .build/bench && cp .build/vm-out/bench/results.json .build/vm-out/bench/results.md .build/bench/

clean:
	rm -rf .build
