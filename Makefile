# vfio-early: build, docs, install.
#
#   make                      static musl release binaries (full tool and boot agent),
#                             for x86_64 and aarch64 (ARCHES), from any of them
#   make docs                 man pages and bash/zsh/fish completions (generated, never committed)
#   make install              into $(DESTDIR)$(PREFIX), /etc config only if absent;
#                             ARCH=aarch64 (or arm64) installs the aarch64 binaries
#   make uninstall            removes what install put there (never /etc/vfio-early.toml)
#   make test                 cargo tests and the install test
#   make deb                  target/debian/vfio-early_<version>_<arch>.deb (packaging/debian)
#
# Packagers: `make && make install DESTDIR=$pkgdir` (install builds nothing that is
# already built). dracut and mkinitcpio only look under /usr/lib, and the hooks take
# the binary from /usr/bin/vfio-early: keep PREFIX=/usr for a working system.

PREFIX            ?= /usr
DESTDIR           ?=
SYSCONFDIR        ?= /etc
BINDIR            ?= $(PREFIX)/bin
LIBDIR            ?= $(PREFIX)/lib
DATADIR           ?= $(PREFIX)/share
MANDIR            ?= $(DATADIR)/man
DOCDIR            ?= $(DATADIR)/doc/vfio-early
DRACUTDIR         ?= $(LIBDIR)/dracut/modules.d
INITCPIODIR       ?= $(LIBDIR)/initcpio
UNITDIR           ?= $(LIBDIR)/vfio-early
INITRAMFSTOOLSDIR ?= $(DATADIR)/initramfs-tools
BASHCOMPDIR       ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR        ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR       ?= $(DATADIR)/fish/vendor_completions.d
# libvirt >= 6.5 runs every executable here; a user's plain `qemu` hook is never touched.
LIBVIRTHOOKDIR    ?= $(SYSCONFDIR)/libvirt/hooks/qemu.d

CARGO      ?= cargo
# Every architecture `make` builds (the aarch64 one links with rust-lld:
# .cargo/config.toml), and the one `make install` carries (Debian's and the
# kernel's names are understood: arm64, amd64, x86).
ARCHES     ?= x86_64 aarch64
ARCH       ?= $(shell uname -m)
RUST_ARCH   = $(patsubst arm64,aarch64,$(patsubst amd64,x86_64,$(patsubst x86,x86_64,$(ARCH))))
TARGET     ?= $(RUST_ARCH)-unknown-linux-musl
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
BIN        ?= $(TARGET_DIR)/$(TARGET)/release/vfio-early
# The boot agent for the initramfs: `bind` alone (--no-default-features), smaller.
BOOT_BIN   ?= $(TARGET_DIR)/boot/$(TARGET)/release/vfio-early
GEN        ?= $(TARGET_DIR)/docs
INSTALL    ?= install

# What the CLI definition lives in: the generated docs are remade when it changes.
CLI_SOURCES := agent/src/cli.rs $(wildcard agent/src/cmd/*.rs) xtask/src/main.rs
MAN_PAGES    = $(wildcard $(GEN)/man/*.8)

# Integration files, whatever is in the tree.
DRACUT_FILES    := $(shell find dracut -mindepth 2 -type f 2>/dev/null | sort)
INITCPIO_FILES  := $(wildcard mkinitcpio/install/* mkinitcpio/hooks/*)
UNIT_FILES      := $(wildcard mkinitcpio/*.service)
ITOOLS_FILES    := $(shell find initramfs-tools -mindepth 2 -type f 2>/dev/null | sort)
EXAMPLES        := $(wildcard examples/*.toml)

.PHONY: all build $(addprefix build-,$(ARCHES)) docs install uninstall test clean-docs
.DELETE_ON_ERROR:

all: build docs

build: $(addprefix build-,$(ARCHES))

$(addprefix build-,$(ARCHES)): build-%:
	$(CARGO) build --release --target $*-unknown-linux-musl -p vfio-early
	$(CARGO) build --release --target $*-unknown-linux-musl -p vfio-early --no-default-features --target-dir $(TARGET_DIR)/boot

# Built only when missing, so `make install` as root after `make` builds nothing.
$(BIN):
	$(CARGO) build --release --target $(TARGET) -p vfio-early

$(BOOT_BIN):
	$(CARGO) build --release --target $(TARGET) -p vfio-early --no-default-features --target-dir $(TARGET_DIR)/boot

docs: $(GEN)/man/vfio-early.8

$(GEN)/man/vfio-early.8: $(CLI_SOURCES)
	rm -rf $(GEN)
	$(CARGO) run -q -p xtask -- docs --out $(GEN)

clean-docs:
	rm -rf $(GEN)

# mode_of FILE: 755 for executables in the tree, 644 for the rest.
mode_of = $$(if [ -x $(1) ]; then echo 0755; else echo 0644; fi)

install: $(BIN) $(BOOT_BIN) $(GEN)/man/vfio-early.8
	$(INSTALL) -Dm0755 $(BIN) $(DESTDIR)$(BINDIR)/vfio-early
	@# What the initramfs hooks put into the image as /usr/bin/vfio-early.
	$(INSTALL) -Dm0755 $(BOOT_BIN) $(DESTDIR)$(LIBDIR)/vfio-early/vfio-early-boot
	@# dracut: modules.d/90vfio-early/ (module-setup.sh and hook scripts run: 0755).
	@set -e; for f in $(DRACUT_FILES); do \
		rel=$${f#dracut/}; \
		echo "$(INSTALL) -Dm$(call mode_of,$$f) $$f $(DESTDIR)$(DRACUTDIR)/$$rel"; \
		$(INSTALL) -Dm$(call mode_of,$$f) $$f $(DESTDIR)$(DRACUTDIR)/$$rel; \
	done
	@# mkinitcpio: install/ and hooks/ are sourced by mkinitcpio and its init: 0644,
	@# as mkinitcpio ships its own.
	@set -e; for f in $(INITCPIO_FILES); do \
		rel=$${f#mkinitcpio/}; \
		echo "$(INSTALL) -Dm0644 $$f $(DESTDIR)$(INITCPIODIR)/$$rel"; \
		$(INSTALL) -Dm0644 $$f $(DESTDIR)$(INITCPIODIR)/$$rel; \
	done
	@# The unit for mkinitcpio's systemd hook: copied into the image, never enabled on the host.
	@set -e; for f in $(UNIT_FILES); do \
		echo "$(INSTALL) -Dm0644 $$f $(DESTDIR)$(UNITDIR)/$${f##*/}"; \
		$(INSTALL) -Dm0644 $$f $(DESTDIR)$(UNITDIR)/$${f##*/}; \
	done
	@# initramfs-tools: hooks and scripts must be executable (0755), the rest data.
	@set -e; for f in $(ITOOLS_FILES); do \
		rel=$${f#initramfs-tools/}; \
		echo "$(INSTALL) -Dm$(call mode_of,$$f) $$f $(DESTDIR)$(INITRAMFSTOOLSDIR)/$$rel"; \
		$(INSTALL) -Dm$(call mode_of,$$f) $$f $(DESTDIR)$(INITRAMFSTOOLSDIR)/$$rel; \
	done
	@# libvirt's QEMU hook: detach at VM start, reattach at stop (our own file in qemu.d/).
	$(INSTALL) -d $(DESTDIR)$(LIBVIRTHOOKDIR)
	sed -e 's|@BINDIR@|$(BINDIR)|g' libvirt/vfio-early >$(DESTDIR)$(LIBVIRTHOOKDIR)/vfio-early.new
	chmod 0755 $(DESTDIR)$(LIBVIRTHOOKDIR)/vfio-early.new
	mv $(DESTDIR)$(LIBVIRTHOOKDIR)/vfio-early.new $(DESTDIR)$(LIBVIRTHOOKDIR)/vfio-early
	@# The config: a fully commented example (it selects nothing), never over a user's file.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/vfio-early.toml ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/vfio-early.toml"; \
	else \
		echo "installing $(DESTDIR)$(SYSCONFDIR)/vfio-early.toml (commented example)"; \
		$(INSTALL) -d $(DESTDIR)$(SYSCONFDIR); \
		sed -e '/^[^#]/s/^/# /' examples/vfio-early.toml >$(DESTDIR)$(SYSCONFDIR)/vfio-early.toml.new; \
		chmod 0644 $(DESTDIR)$(SYSCONFDIR)/vfio-early.toml.new; \
		mv $(DESTDIR)$(SYSCONFDIR)/vfio-early.toml.new $(DESTDIR)$(SYSCONFDIR)/vfio-early.toml; \
	fi
	@set -e; for f in $(EXAMPLES) $(wildcard docs/*.md); do \
		echo "$(INSTALL) -Dm0644 $$f $(DESTDIR)$(DOCDIR)/$${f##*/}"; \
		$(INSTALL) -Dm0644 $$f $(DESTDIR)$(DOCDIR)/$${f##*/}; \
	done
	@# Generated: man pages and completions.
	$(INSTALL) -d $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m0644 $(GEN)/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -Dm0644 $(GEN)/completions/vfio-early.bash $(DESTDIR)$(BASHCOMPDIR)/vfio-early
	$(INSTALL) -Dm0644 $(GEN)/completions/_vfio-early $(DESTDIR)$(ZSHCOMPDIR)/_vfio-early
	$(INSTALL) -Dm0644 $(GEN)/completions/vfio-early.fish $(DESTDIR)$(FISHCOMPDIR)/vfio-early.fish
	@echo "installed. Next: vfio-early groups --gpu; vfio-early config suggest --gpu N --write; vfio-early apply"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vfio-early
	rm -f $(DESTDIR)$(LIBVIRTHOOKDIR)/vfio-early
	@set -e; for d in $(sort $(dir $(DRACUT_FILES))); do \
		rm -rf $(DESTDIR)$(DRACUTDIR)/$${d#dracut/}; \
	done
	@set -e; for f in $(INITCPIO_FILES); do rm -f $(DESTDIR)$(INITCPIODIR)/$${f#mkinitcpio/}; done
	rm -f $(DESTDIR)$(LIBDIR)/vfio-early/vfio-early-boot
	rm -rf $(DESTDIR)$(UNITDIR)
	@set -e; for f in $(ITOOLS_FILES); do rm -f $(DESTDIR)$(INITRAMFSTOOLSDIR)/$${f#initramfs-tools/}; done
	rm -rf $(DESTDIR)$(DOCDIR)
	rm -f $(DESTDIR)$(MANDIR)/man8/vfio-early.8 $(DESTDIR)$(MANDIR)/man8/vfio-early-*.8
	rm -f $(DESTDIR)$(BASHCOMPDIR)/vfio-early $(DESTDIR)$(ZSHCOMPDIR)/_vfio-early $(DESTDIR)$(FISHCOMPDIR)/vfio-early.fish
	@echo "$(DESTDIR)$(SYSCONFDIR)/vfio-early.toml is yours: left in place. Rebuild the initramfs now (dracut -f, mkinitcpio -P or update-initramfs -u -k all)."

test:
	$(CARGO) test --workspace
	tests/install.sh

# Debian package: target/debian/vfio-early_<version>_<arch>.deb (dpkg-deb over
# `make install DESTDIR=`; packaging/debian/build-deb.sh says what it adds).
# Always through cargo (a no-op when up to date): a stale binary is never packaged.
.PHONY: deb
deb: build-$(RUST_ARCH) $(GEN)/man/vfio-early.8
	TARGET_DIR=$(TARGET_DIR) packaging/debian/build-deb.sh
