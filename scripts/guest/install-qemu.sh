#!/usr/bin/env bash
# Install QEMU >= 10 (from Debian bookworm-backports) and the host tools that
# scripts/guest/build-guest.sh needs. Idempotent: safe to run again; it only
# adds the backports source when it is missing and apt-get skips what is
# already installed. Needs root (or sudo) and Debian bookworm.
#
#   scripts/guest/install-qemu.sh
#
# Environment:
#   QEMU_MIN_MAJOR   lowest acceptable QEMU major version (default 10)
set -euo pipefail

MIN_MAJOR="${QEMU_MIN_MAJOR:-10}"
SOURCES_FILE=/etc/apt/sources.list.d/bookworm-backports.sources
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() {
  echo "install-qemu: error: $*" >&2
  exit 1
}
log() { echo "install-qemu: $*" >&2; }

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

qemu_major() {
  local v
  v="$(qemu-system-x86_64 --version 2>/dev/null | sed -n 's/.*version \([0-9][0-9]*\)\..*/\1/p' | head -n1)"
  echo "${v:-0}"
}

# 1. The bookworm-backports source (deb822), unless some source already lists it.
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
fi

# 2. Refresh the package lists.
log "apt-get update"
"${SUDO[@]}" apt-get update -q >/dev/null || die "apt-get update failed (network? sources?)"

# Was backports really fetched?
# (Capture first: with pipefail, grep -q closing the pipe early would fail the test.)
policy="$(apt-cache policy qemu-system-x86)"
grep -q bookworm-backports <<<"$policy" ||
  die "qemu-system-x86 is not offered by bookworm-backports after apt-get update"

# 3. QEMU from backports, host tools from bookworm. --no-install-recommends keeps
#    it small (no GUI, no ipxe-less surprises: qemu-system-data comes as a dependency).
export DEBIAN_FRONTEND=noninteractive
log "installing qemu-system-x86 from bookworm-backports"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends -t bookworm-backports \
  qemu-system-x86 qemu-system-data qemu-utils >/dev/null ||
  die "apt-get install -t bookworm-backports qemu-system-x86 failed"

log "installing guest build tools"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends \
  cpio gzip xz-utils zstd kmod busybox-static util-linux >/dev/null ||
  die "apt-get install of guest build tools failed"

# 4. Check the result.
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not on PATH after install"
major="$(qemu_major)"
[ "$major" -ge "$MIN_MAJOR" ] || die "qemu-system-x86_64 is version $major, need >= $MIN_MAJOR"
devices="$(qemu-system-x86_64 -device help 2>/dev/null || true)"
for dev in vhost-user-snd-pci virtio-sound-pci; do
  grep -q "\"$dev\"" <<<"$devices" ||
    die "qemu-system-x86_64 lacks the $dev device"
done
qemu-system-x86_64 --version
