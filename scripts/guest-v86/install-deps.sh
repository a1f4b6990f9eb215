#!/usr/bin/env bash
# Install what scripts/guest-v86/build-v86-guest.sh needs on Debian bookworm
# (amd64): the kernel build tools, linux-source-6.12 from bookworm-backports,
# and the i386 architecture in dpkg (the guest's userspace is i386 packages,
# fetched with `apt-get download`). Idempotent and quick when all is present.
# Needs root (or sudo).
#
#   scripts/guest-v86/install-deps.sh
set -euo pipefail

# Same file as scripts/guest/install-qemu.sh writes, so the two never duplicate it.
SOURCES_FILE=/etc/apt/sources.list.d/bookworm-backports.sources
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
KERNEL_SOURCE=linux-source-6.12
TOOLS=(build-essential bc flex bison libelf-dev cpio gzip xz-utils binutils)

die() {
  echo "install-v86-deps: error: $*" >&2
  exit 1
}
log() { echo "install-v86-deps: $*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root (or have sudo)"
  SUDO=(sudo)
fi

[ -r /etc/os-release ] || die "/etc/os-release missing: not a Debian system?"
# shellcheck disable=SC1091
. /etc/os-release
if [ "${ID:-}" != debian ] || [ "${VERSION_CODENAME:-}" != bookworm ]; then
  die "this script supports Debian bookworm only (found ${ID:-?} ${VERSION_CODENAME:-?})"
fi
[ "$(dpkg --print-architecture)" = amd64 ] || die "amd64 host required"

installed() { # installed PKG...: true when every package is installed
  local p status
  for p in "$@"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" || return 1
    [ "$status" = installed ] || return 1
  done
}

offered() { # offered PKG...: true when apt has a candidate version of every package
  local out
  out="$(apt-cache policy "$@" 2>/dev/null || true)"
  [ "$(grep -c '^ *Candidate: [0-9]' <<<"$out")" -eq "$#" ]
}

need_update=0

# 1. bookworm-backports (deb822), unless some source already lists it.
if grep -rqsE '(^|[[:space:]])bookworm-backports([[:space:]]|$)' /etc/apt/sources.list /etc/apt/sources.list.d/ --include=sources.list --include='*.list' --include='*.sources'; then
  log "bookworm-backports already in apt sources"
else
  [ -r "$KEYRING" ] || die "$KEYRING missing (install debian-archive-keyring)"
  log "adding $SOURCES_FILE"
  "${SUDO[@]}" tee "$SOURCES_FILE" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: $KEYRING
SRC
  need_update=1
fi

# 2. i386 packages (busybox-static, alsa-utils, libc6, ... for the guest).
if ! grep -qx i386 <<<"$(dpkg --print-foreign-architectures)"; then
  log "dpkg --add-architecture i386"
  "${SUDO[@]}" dpkg --add-architecture i386
  need_update=1
fi

# 3. Refresh the lists when a source or architecture was added, or when the
#    i386 or backports packages are not in them yet.
if [ "$need_update" = 0 ] && ! offered "$KERNEL_SOURCE" busybox-static:i386 alsa-utils:i386; then
  need_update=1
fi
if [ "$need_update" = 1 ]; then
  log "apt-get update"
  "${SUDO[@]}" apt-get update -q >/dev/null || die "apt-get update failed (network? sources?)"
fi

# 4. The kernel source from backports, build tools from bookworm.
export DEBIAN_FRONTEND=noninteractive
if installed "$KERNEL_SOURCE" "${TOOLS[@]}"; then
  log "build tools and $KERNEL_SOURCE already installed"
else
  log "installing $KERNEL_SOURCE (bookworm-backports) and kernel build tools"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${TOOLS[@]}" >/dev/null ||
    die "apt-get install of kernel build tools failed"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends -t bookworm-backports "$KERNEL_SOURCE" >/dev/null ||
    die "apt-get install -t bookworm-backports $KERNEL_SOURCE failed"
fi

# 5. Check the result.
ls /usr/src/"$KERNEL_SOURCE".tar.* >/dev/null 2>&1 || die "/usr/src/$KERNEL_SOURCE.tar.* missing after install"
for tool in gcc make bc flex bison cpio xz gzip; do
  command -v "$tool" >/dev/null || die "$tool not on PATH after install"
done
offered busybox-static:i386 alsa-utils:i386 || die "i386 packages not offered by apt after adding the architecture"
log "ok: $(ls /usr/src/"$KERNEL_SOURCE".tar.*)"
