#!/usr/bin/env bash
# Build the Linux test guest: a Debian backports kernel (it has CONFIG_SND_VIRTIO
# as a module) and a small busybox + alsa-utils initramfs.
#
#   scripts/guest/build-guest.sh [CACHE_DIR]     (default: $VSND_GUEST_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/virtio-snd/guest)
#
# Outputs, in CACHE_DIR:
#   vmlinuz              the kernel
#   initramfs.cpio.gz    the base initramfs (/init, busybox, aplay/arecord/amixer, modules)
#   versions.txt         the Debian packages (and versions) it was built from
#   stamp                cache key: hash of this script + package versions
#
# Nothing is installed into the host: guest packages are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x`. Host tools needed:
# apt-get, dpkg-deb, depmod/modprobe (kmod), cpio, gzip, xz, zstd
# (scripts/guest/install-qemu.sh installs them and enables bookworm-backports).
#
# A test boots the kernel with this initramfs followed by a second, appended
# cpio archive holding /payload/run.sh (and its data files). /init:
#   1. mounts proc, sys, devtmpfs, tmpfs /tmp
#   2. insmods the sound (and virtio-blk) modules, shipped uncompressed
#   3. waits for /dev/snd/pcm* when a virtio-sound PCI function is present
#   4. runs `. /lib/guest-lib.sh; cd /payload; . ./run.sh` (helpers: marker,
#      step, emit_file), printing "@@VSND payload.exit=N"; killed (exit 137)
#      after vsnd.timeout=SECONDS if the kernel command line has it
#   5. sends files given to emit_file back: as a tar written to the virtio-blk
#      disk whose serial is "vsnd-out" if there is one, else base64 on the console
#   6. poweroff -f (QEMU exits; -no-reboot + panic=-1 cover a failing poweroff)
# Console lines of the form "@@VSND key=value" are results (markers).
#
# Environment:
#   GUEST_KERNEL_PKG   kernel package to use (default: newest linux-image-6.12.*+deb12*-amd64)
#   GUEST_FORCE=1      rebuild even if the cache is up to date
set -euo pipefail

die() {
  echo "build-guest: error: $*" >&2
  exit 1
}
log() { echo "build-guest: $*" >&2; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_DIR="${1:-${VSND_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/virtio-snd/guest}}"
mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
SCRIPT_HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"

# One build at a time per cache dir (parallel test files may all ask for it);
# a waiter finds the cache complete afterwards and returns at once.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.lock"
  flock 9
fi

for tool in apt-get apt-cache dpkg-deb depmod modprobe cpio gzip xz zstd sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run scripts/guest/install-qemu.sh)"
done

# ---------------------------------------------------------------- versions --
# The guest's packages. alsa-utils' own library dependencies are added below;
# only the libraries that aplay/amixer/speaker-test really load get copied.
BASE_PKGS=(busybox-static alsa-utils libasound2 libasound2-data libc6 libgcc-s1)

pick_kernel() {
  if [ -n "${GUEST_KERNEL_PKG:-}" ]; then
    echo "$GUEST_KERNEL_PKG"
    return
  fi
  apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12(\.[0-9]+)?-amd64$' 2>/dev/null |
    cut -d' ' -f1 | sort -V | tail -n1
}

alsa_lib_deps() {
  # Library packages alsa-utils and libasound2 depend on (libfoo, not kmod/lsb-base).
  local out
  out="$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances alsa-utils libasound2 2>/dev/null)" || return 0
  sed -n 's/^ *Depends: \(lib[^ <>]*\)$/\1/p' <<<"$out" | sort -u
}

resolve_versions() {
  KERNEL_PKG="$(pick_kernel)"
  [ -n "$KERNEL_PKG" ] || return 1
  PKGS=("$KERNEL_PKG" "${BASE_PKGS[@]}")
  local p
  for p in $(alsa_lib_deps); do
    case " ${PKGS[*]} " in *" $p "*) ;; *) PKGS+=("$p") ;; esac
  done
  # One apt-cache call for all candidates (each call costs a second or two).
  local out
  out="$(apt-cache policy "${PKGS[@]}" 2>/dev/null)" || return 1
  VERSIONS="$(awk -v want="${PKGS[*]}" '
    /^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1); next }
    /^ *Candidate: / { if ($2 != "(none)") cand[pkg] = $2 }
    END {
      n = split(want, w, " ")
      for (i = 1; i <= n; i++) { if (!(w[i] in cand)) exit 1; print w[i] "=" cand[w[i]] }
    }' <<<"$out")" || return 1
  VERSIONS+=$'\n'
}

if ! resolve_versions; then
  if [ "$(id -u)" -eq 0 ]; then
    log "guest packages not found in the apt lists; running apt-get update"
    apt-get update -q >/dev/null 2>&1 || true
  fi
  if ! resolve_versions; then
    # Offline, or the lists lack backports: a complete cache built by this very
    # script is still good.
    if [ -s "$CACHE_DIR/vmlinuz" ] && [ -s "$CACHE_DIR/initramfs.cpio.gz" ] &&
      [ -f "$CACHE_DIR/stamp" ] && grep -q "^script=$SCRIPT_HASH\$" "$CACHE_DIR/stamp"; then
      log "warning: cannot resolve package versions (apt lists?); using the existing cache"
      exit 0
    fi
    die "cannot find the guest packages (a linux-image-6.12.*-amd64 from bookworm-backports, alsa-utils, ...) in apt; run scripts/guest/install-qemu.sh first"
  fi
fi

KEY="script=$SCRIPT_HASH"$'\n'"$VERSIONS"
if [ "${GUEST_FORCE:-0}" != 1 ] && [ -s "$CACHE_DIR/vmlinuz" ] && [ -s "$CACHE_DIR/initramfs.cpio.gz" ] &&
  [ -s "$CACHE_DIR/versions.txt" ] && [ -f "$CACHE_DIR/stamp" ] && [ "$(cat "$CACHE_DIR/stamp")" = "${KEY%$'\n'}" ]; then
  log "guest up to date in $CACHE_DIR ($KERNEL_PKG)"
  exit 0
fi

START=$SECONDS
log "building the guest in $CACHE_DIR with $KERNEL_PKG"

# --------------------------------------------------------------- download --
DEBS="$CACHE_DIR/debs"
WORK="$CACHE_DIR/work"
rm -rf "$WORK"
mkdir -p "$DEBS" "$WORK/stage" "$WORK/root"
STAGE="$WORK/stage"
ROOT="$WORK/root"
trap 'rm -rf "$WORK"' EXIT

deb_file() { # deb_file PKG VERSION: the downloaded .deb, if any (apt writes ':' as %3a)
  local f
  for f in "$DEBS/${1}_${2//:/%3a}_"*.deb "$DEBS/${1}_${2#*:}_"*.deb; do
    if [ -f "$f" ]; then
      echo "$f"
      return
    fi
  done
}
want=()
while IFS= read -r line; do
  [ -n "$line" ] || continue
  p="${line%%=*}"
  v="${line#*=}"
  f="$(deb_file "$p" "$v")"
  [ -n "$f" ] || want+=("$p=$v")
done <<<"$VERSIONS"
if [ "${#want[@]}" -gt 0 ]; then
  log "apt-get download ${want[*]}"
  (cd "$DEBS" && apt-get -q -o APT::Sandbox::User=root download "${want[@]}" >/dev/null) ||
    die "apt-get download failed for: ${want[*]}"
fi
# Keep only the wanted versions in the deb cache.
keep=" "
while IFS= read -r line; do
  [ -n "$line" ] || continue
  p="${line%%=*}"
  v="${line#*=}"
  f="$(deb_file "$p" "$v")"
  [ -n "$f" ] || die "downloaded package for $p=$v not found in $DEBS"
  keep+="$(basename "$f") "
done <<<"$VERSIONS"
for f in "$DEBS"/*.deb; do
  case "$keep" in *" $(basename "$f") "*) ;; *) rm -f "$f" ;; esac
done

# ---------------------------------------------------------------- extract --
for f in "$DEBS"/*.deb; do
  dpkg-deb -x "$f" "$STAGE" || die "dpkg-deb -x $f failed"
done

KVER=""
for d in "$STAGE"/lib/modules/*/; do
  [ -d "$d" ] && KVER="$(basename "$d")"
done
if [ -z "$KVER" ] || [ ! -f "$STAGE/boot/vmlinuz-$KVER" ]; then
  die "no kernel found in $KERNEL_PKG"
fi
grep -q '^CONFIG_SND_VIRTIO=[ym]' "$STAGE/boot/config-$KVER" || die "$KVER lacks CONFIG_SND_VIRTIO"

# ---------------------------------------------------------------- modules --
log "resolving modules for $KVER"
depmod -b "$STAGE" "$KVER" || die "depmod failed"
mkdir -p "$ROOT/lib/modules"
: >"$ROOT/etc-modules.tmp"
for mod in virtio_snd virtio_blk; do
  deps="$(modprobe -d "$STAGE" -S "$KVER" --show-depends "$mod")" || die "modprobe --show-depends $mod failed"
  while read -r kind path _; do
    [ "$kind" = insmod ] || continue # "builtin NAME" lines need nothing
    name="$(basename "$path")"
    name="${name%.xz}"
    name="${name%.zst}"
    name="${name%.gz}"
    grep -qx "$name" "$ROOT/etc-modules.tmp" && continue
    case "$path" in
    *.ko.xz) xz -dc "$path" >"$ROOT/lib/modules/$name" ;;
    *.ko.zst) zstd -qdc "$path" >"$ROOT/lib/modules/$name" ;;
    *.ko.gz) gzip -dc "$path" >"$ROOT/lib/modules/$name" ;;
    *.ko) cp "$path" "$ROOT/lib/modules/$name" ;;
    *) die "unexpected module file $path" ;;
    esac
    echo "$name" >>"$ROOT/etc-modules.tmp"
  done <<<"$deps"
done
MODULES="$(paste -sd' ' "$ROOT/etc-modules.tmp")"
rm -f "$ROOT/etc-modules.tmp"
log "modules: $MODULES"

# ----------------------------------------------------------------- rootfs --
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,run,out,root,usr/bin,usr/sbin,usr/share,lib64,lib/x86_64-linux-gnu,usr/lib/x86_64-linux-gnu}
echo "$MODULES" | tr ' ' '\n' | sed '/^$/d' >"$ROOT/etc/guest-modules"

cp "$STAGE/bin/busybox" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
"$ROOT/bin/busybox" --list-full | while read -r applet; do
  [ -e "$ROOT/$applet" ] || [ -L "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done

LIBPATH="$STAGE/lib/x86_64-linux-gnu:$STAGE/usr/lib/x86_64-linux-gnu"
LDSO="$STAGE/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
[ -x "$LDSO" ] || LDSO="$STAGE/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
[ -x "$LDSO" ] || die "ld-linux-x86-64.so.2 not found in libc6"

copy_lib() { # copy_lib STAGE_PATH: copy (dereferenced) to the same path in ROOT
  local rel="${1#"$STAGE"}"
  mkdir -p "$ROOT$(dirname "$rel")"
  [ -e "$ROOT$rel" ] || cp -L "$1" "$ROOT$rel"
}

copy_bin() { # copy_bin /usr/bin/NAME: the binary and every library it loads
  local bin="$STAGE$1" line lib
  [ -f "$bin" ] || die "$1 not found in the guest packages"
  cp -L "$bin" "$ROOT$1"
  chmod 0755 "$ROOT$1"
  local list
  list="$("$LDSO" --library-path "$LIBPATH" --list "$bin")" || die "ld.so --list $1 failed"
  while IFS= read -r line; do
    case "$line" in
    *"=> not found"*) die "$1 needs ${line%% *}, not in the guest packages" ;;
    *"=> "*)
      lib="${line#*=> }"
      lib="${lib% (*}"
      case "$lib" in
      "$STAGE"/*) copy_lib "$lib" ;;
      *) die "$1 needs $lib, which resolved outside the guest packages" ;;
      esac
      ;;
    esac
  done <<<"$list"
}

copy_lib "$LDSO"
ln -sf "/${LDSO#"$STAGE"/}" "$ROOT/lib64/ld-linux-x86-64.so.2"
for b in /usr/bin/aplay /usr/bin/amixer /usr/bin/speaker-test; do
  copy_bin "$b"
done
ln -sf aplay "$ROOT/usr/bin/arecord"
cp -a "$STAGE/usr/share/alsa" "$ROOT/usr/share/alsa"
[ -f "$ROOT/usr/share/alsa/alsa.conf" ] || die "alsa.conf missing from libasound2-data"

cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
audio:x:29:
EOF

# Helpers for payload scripts (sourced before /payload/run.sh).
cat >"$ROOT/lib/guest-lib.sh" <<'EOF'
# Sourced by /init before /payload/run.sh.
#   marker KEY VALUE...    print "@@VSND KEY=VALUE" (a result the host parses)
#   step KEY CMD ARGS...   run CMD, print its output, then "@@VSND KEY=<exit code>"
#   emit_file NAME PATH    send PATH back to the host as NAME (files returned at the end)
marker() {
  _k="$1"
  shift
  echo "@@VSND $_k=$*"
}
step() {
  _k="$1"
  shift
  "$@"
  _rc=$?
  echo "@@VSND $_k=$_rc"
  return $_rc
}
emit_file() {
  case "$1" in
  "" | */* | .*) echo "emit_file: bad name '$1'" >&2; return 2 ;;
  esac
  cp "$2" "/out/$1"
}
EOF

cat >"$ROOT/init" <<'EOF'
#!/bin/sh
# Test guest init: see scripts/guest/build-guest.sh.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /out
exec </dev/console >/dev/console 2>&1

echo "@@VSND boot=$(cut -d' ' -f1 /proc/uptime)"
echo "@@VSND kernel=$(uname -r)"
while read -r m; do
  insmod "/lib/modules/$m" || echo "@@VSND insmod.failed=$m"
done </etc/guest-modules

# Wait for a device to appear when the PCI function that needs it is present.
has_pci() { # has_pci VENDOR DEVICE...
  v="$1"
  shift
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = "$v" ] || continue
    dev="$(cat "$d/device")"
    for want in "$@"; do
      [ "$dev" = "$want" ] && return 0
    done
  done
  return 1
}
wait_for() { # wait_for TENTHS GLOB
  n=0
  while [ "$n" -lt "$1" ]; do
    for f in $2; do [ -e "$f" ] && return 0; done
    sleep 0.1
    n=$((n + 1))
  done
  return 1
}
# virtio-sound: 0x1af4:0x1059; virtio-blk: 0x1af4:0x1001 (transitional) / 0x1042.
if has_pci 0x1af4 0x1059; then
  if wait_for 150 "/dev/snd/pcmC*"; then
    echo "@@VSND snd=ready"
  else
    echo "@@VSND snd=timeout"
  fi
else
  echo "@@VSND snd=absent"
fi
OUTDEV=""
if has_pci 0x1af4 0x1001 0x1042; then
  wait_for 50 "/sys/block/vd*" || true
  for b in /sys/block/vd*; do
    [ -e "$b/serial" ] && [ "$(cat "$b/serial")" = vsnd-out ] && OUTDEV="/dev/${b##*/}"
  done
fi

echo "@@VSND ready=$(cut -d' ' -f1 /proc/uptime)"
# vsnd.timeout=SECONDS on the kernel command line: kill a payload that hangs,
# so that its output and emitted files still come back.
limit="$(sed -n 's/.*vsnd\.timeout=\([0-9][0-9]*\).*/\1/p' /proc/cmdline)"
if [ -f /payload/run.sh ]; then
  if [ -n "$limit" ]; then
    timeout -s KILL "$limit" /bin/sh -c '. /lib/guest-lib.sh; cd /payload && . ./run.sh'
  else
    /bin/sh -c '. /lib/guest-lib.sh; cd /payload && . ./run.sh'
  fi
  echo "@@VSND payload.exit=$?"
else
  echo "@@VSND payload.exit=missing"
fi

# Return emitted files.
if [ -n "$(ls /out)" ]; then
  if [ -n "$OUTDEV" ]; then
    (cd /out && tar -cf /tmp/out.tar -- *)
    size=$(wc -c </tmp/out.tar)
    disk=$(($(cat "/sys/block/${OUTDEV#/dev/}/size") * 512))
    if [ "$size" -le "$disk" ]; then
      dd if=/tmp/out.tar of="$OUTDEV" bs=65536 conv=fsync 2>/dev/null && sync
      echo "@@VSND out.tar=$size"
    else
      echo "@@VSND out.error=tar of $size bytes does not fit the $disk-byte disk"
    fi
  else
    for f in /out/*; do
      echo "@@VSND-FILE-BEGIN ${f##*/} $(wc -c <"$f")"
      base64 "$f"
      echo "@@VSND-FILE-END ${f##*/}"
    done
  fi
fi

if grep -q 'vsnd.shell' /proc/cmdline; then
  setsid cttyhack sh
fi
echo "@@VSND done=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
sleep 5
echo o >/proc/sysrq-trigger
EOF
chmod 0755 "$ROOT/init"

# ----------------------------------------------------------------- output --
log "writing initramfs"
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --owner 0:0) |
  gzip -9n >"$CACHE_DIR/initramfs.cpio.gz.tmp"
cp "$STAGE/boot/vmlinuz-$KVER" "$CACHE_DIR/vmlinuz.tmp"
{
  echo "# guest built $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/guest/build-guest.sh"
  echo "kernel=$KVER"
  echo "modules=$MODULES"
  echo "$VERSIONS" | sed '/^$/d'
} >"$CACHE_DIR/versions.txt"
mv "$CACHE_DIR/vmlinuz.tmp" "$CACHE_DIR/vmlinuz"
mv "$CACHE_DIR/initramfs.cpio.gz.tmp" "$CACHE_DIR/initramfs.cpio.gz"
printf '%s' "${KEY%$'\n'}" >"$CACHE_DIR/stamp"
log "done in $((SECONDS - START)) s: $(du -h "$CACHE_DIR/initramfs.cpio.gz" | cut -f1) initramfs, kernel $KVER"
