# The two commands of the README: `make demo` and `make test`. Each installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := demo

# Debian packages the demo and the tests drive: real DHCP clients, iproute2, ping, nftables, tcpdump, curl;
# the world's servers and clients for NAT: iperf3, dnsmasq, traceroute, dig; rdisc6 (ndisc6) for IPv6
# router advertisements; the attackers of the isolation tests: arpspoof (dsniff), arping, scapy, nmap;
# QEMU and cpio for the real guest (its kernel and busybox-static are downloaded by the test, not
# installed); sudo and systemd (for systemd-analyze, not run as init) for the privileges tests and the
# checks of packaging/; mandoc to lint the man pages.
DEB_PACKAGES := busybox isc-dhcp-client dhcpcd-base iproute2 iputils-ping nftables tcpdump procps curl \
	iperf3 dnsmasq-base traceroute bind9-dnsutils ndisc6 dsniff arping python3-scapy nmap qemu-system-x86 cpio \
	sudo systemd mandoc

# What the peers and scale benches compare softnet with: pasta (in passt) and slirp4netns.
BENCH_DEB_PACKAGES := passt slirp4netns

.PHONY: demo test deps debs build lint typecheck unit integration bench bench-peers bench-scale bench-fixtures \
	bench-replay soak fuzz install clean

demo: deps build
	./bin/softnet demo

test: deps build typecheck lint unit integration

deps: debs node_modules/.installed

debs:
	@missing=0; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing Debian packages: $(DEB_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES) >/dev/null; \
	fi

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

build: node_modules/.installed
	npx node-gyp rebuild --nodedir=/usr --directory native --loglevel=warn
	npx tsc -p tsconfig.json

typecheck: node_modules/.installed
	npx tsc -p tsconfig.json --noEmit

lint: node_modules/.installed
	npx biome check src test bench

unit: build
	node --test --test-concurrency=2 dist/test/unit/

integration: build
	node --test --test-concurrency=2 --test-timeout=300000 dist/test/integration/

bench: deps build
	node --expose-gc --min-semi-space-size=128 --max-semi-space-size=128 dist/bench/pipeline.js

# The replay bench (bench/REPLAY.md): the fixtures, or REPLAY_ARGS='--pcap FILE ...', through the pipeline
# in-process and over a socketpair and a TAP in throwaway namespaces; writes bench/results/replay.{json,md}.
REPLAY_ARGS ?=
bench-replay: deps build
	node --expose-gc --min-semi-space-size=128 --max-semi-space-size=128 dist/bench/replay.js $(REPLAY_ARGS)

# Regenerates the replay bench's pcaps (bench/fixtures/*.pcap) from a scripted run of the real softnet in
# throwaway namespaces.
bench-fixtures: deps build
	node dist/bench/fixtures/capture.js

# softnet against the kernel's path, pasta and slirp4netns in namespaces; results in bench/results/.
bench-peers: deps build
	@$(MAKE) --no-print-directory debs DEB_PACKAGES='$(BENCH_DEB_PACKAGES)'
	node dist/bench/peers.js

# Throughput per VM with 1, 2, 4 and 8 VMs active, and softnet's CPU with 100 idle VMs attached.
bench-scale: deps build
	@$(MAKE) --no-print-directory debs DEB_PACKAGES='$(BENCH_DEB_PACKAGES)'
	node dist/bench/scale.js

# The soak of issue 13: 20 VMs on one `softnet serve` with traffic and churn, every host fault on a schedule,
# checks all along and a table at the end; exit 1 when a check fails. SOAK_ARGS='--minutes 60 --vms 30'.
SOAK_ARGS ?= --minutes 10 --vms 20
soak: deps build
	node dist/bench/soak.js $(SOAK_ARGS)

# The long fuzz run: 350000 frames from each side of the pipeline and 350000 DHCP messages.
fuzz: deps build
	node dist/test/fuzz/run.js 350000

# softnet under PREFIX: its code in PREFIX/lib/softnet (production npm packages only), the commands softnet
# and vmtool in PREFIX/bin, their man pages in PREFIX/share/man, the bash completion where bash-completion
# looks (PREFIX/share/bash-completion/completions, as softnet and as vmtool), the privileges document in
# PREFIX/share/doc/softnet; and the files of packaging/ with their paths
# rewritten for PREFIX: the sudoers drop-in (checked with visudo first), the systemd unit and the sysusers
# entry that makes its user. DESTDIR stages it all elsewhere. Nothing is enabled or started; the launchd
# plist is macOS's, copied by hand (docs/privileges.md).
PREFIX ?= /usr/local
LIBDIR = $(DESTDIR)$(PREFIX)/lib/softnet
REWRITE = sed -e 's|/usr/local/bin/softnet|$(PREFIX)/bin/softnet|g' -e 's|/usr/local/share/doc|$(PREFIX)/share/doc|g'

install: build
	install -d $(LIBDIR)/bin $(LIBDIR)/dist $(LIBDIR)/native/build/Release $(DESTDIR)$(PREFIX)/bin
	cp -R dist/src $(LIBDIR)/dist/
	install -m 0644 package.json package-lock.json $(LIBDIR)/
	install -m 0755 bin/softnet bin/vmtool $(LIBDIR)/bin/
	install -m 0755 native/build/Release/softnet.node $(LIBDIR)/native/build/Release/
	npm ci --omit=dev --no-audit --no-fund --prefix $(LIBDIR)
	ln -sfn ../lib/softnet/bin/softnet $(DESTDIR)$(PREFIX)/bin/softnet
	ln -sfn ../lib/softnet/bin/vmtool $(DESTDIR)$(PREFIX)/bin/vmtool
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/man/man8 man/softnet.8 man/softnet-serve.8 man/softnet-network.8
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/man/man1 man/vmtool.1
	install -D -m 0644 completions/softnet.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/softnet
	ln -sfn softnet $(DESTDIR)$(PREFIX)/share/bash-completion/completions/vmtool
	install -D -m 0644 docs/privileges.md $(DESTDIR)$(PREFIX)/share/doc/softnet/privileges.md
	mkdir -p $(DESTDIR)/etc/sudoers.d $(DESTDIR)/etc/systemd/system
	$(REWRITE) packaging/sudoers/softnet | visudo -cqf -
	$(REWRITE) packaging/sudoers/softnet | install -m 0440 /dev/stdin $(DESTDIR)/etc/sudoers.d/softnet
	$(REWRITE) packaging/systemd/softnet.service | install -m 0644 /dev/stdin $(DESTDIR)/etc/systemd/system/softnet.service
	install -D -m 0644 packaging/systemd/softnet.sysusers $(DESTDIR)/usr/lib/sysusers.d/softnet.conf

clean:
	rm -rf dist native/build node_modules
