#!/usr/bin/env bash
# Build the Linux test guest for v86 (a 32-bit x86 PC emulator): an i386 kernel
# with the virtio sound driver built in, and a busybox + alsa-utils initramfs.
# No Debian i386 kernel has CONFIG_SND_VIRTIO, so the kernel is compiled here
# from Debian's linux-source-6.12 (bookworm-backports): `make tinyconfig` plus
# scripts/guest-v86/kernel.config.
#
#   scripts/guest-v86/build-v86-guest.sh [CACHE_DIR]
#     (default: $VSND_GUEST_CACHE_V86, else ${XDG_CACHE_HOME:-~/.cache}/virtio-snd/v86)
#
# Outputs, in CACHE_DIR:
#   bzImage              the kernel (everything built in, no modules)
#   kernel.config        its full .config
#   System.map           its symbols (to read addresses in oopses and initcall_debug)
#   initramfs.cpio.gz    the base initramfs (/init, busybox, aplay/arecord/amixer)
#   bios.bin             SeaBIOS (v86 ships none)
#   versions.txt         the sources and Debian packages (and versions) used
#   stamp                cache key: hashes of this script and kernel.config, package versions
#
# Nothing is installed into the host: the kernel source is the tarball that
# linux-source-6.12 puts in /usr/src, and the guest's i386 packages are fetched
# with `apt-get download` and unpacked with `dpkg-deb -x`.
# scripts/guest-v86/install-deps.sh installs the build tools and the source,
# and adds the i386 architecture to dpkg.
#
# A test boots the kernel with this initramfs followed by a second, appended
# cpio archive holding /payload/run.sh (and its data files). /init:
#   1. mounts proc, sys, devtmpfs, tmpfs /tmp
#   2. waits for /dev/snd/pcm* when a virtio-sound PCI function is present
#   3. runs `. /lib/guest-lib.sh; cd /payload; . ./run.sh` (helpers: marker,
#      step, emit_file), printing "@@VSND payload.exit=N"; killed (exit 137)
#      after vsnd.timeout=SECONDS if the kernel command line has it
#   4. prints files given to emit_file as base64 on the console
#   5. prints "@@VSND done=..." and powers off (v86 just halts; the host stops it)
# Console lines of the form "@@VSND key=value" are results (markers).
#
# Environment:
#   V86_GUEST_FORCE=1  rebuild everything even if the cache is up to date
#   V86_GUEST_JOBS     parallel kernel build jobs (default: nproc)
set -euo pipefail

die() {
  echo "build-v86-guest: error: $*" >&2
  exit 1
}
log() { echo "build-v86-guest: $*" >&2; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FRAGMENT="$SCRIPT_DIR/kernel.config"
CACHE_DIR="${1:-${VSND_GUEST_CACHE_V86:-${XDG_CACHE_HOME:-$HOME/.cache}/virtio-snd/v86}}"
mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
SCRIPT_HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
[ -f "$FRAGMENT" ] || die "$FRAGMENT missing"
CONFIG_HASH="$(sha256sum "$FRAGMENT" | cut -d' ' -f1)"

KSRC_PKG=linux-source-6.12
KSRC_TAR="/usr/src/$KSRC_PKG.tar.xz"

# One build at a time per cache dir (parallel test files may all ask for it);
# a waiter finds the cache complete afterwards and returns at once.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.lock"
  flock 9
fi

for tool in apt-get apt-cache dpkg-deb dpkg-query readelf cpio gzip xz tar make gcc bc flex bison sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run scripts/guest-v86/install-deps.sh)"
done

# ---------------------------------------------------------------- versions --
# The guest's i386 packages. The libraries that alsa-utils and libasound2
# depend on are added below; only those that aplay/amixer really load (their
# ELF NEEDED entries, recursively) are copied into the initramfs.
BASE_PKGS=(busybox-static:i386 alsa-utils:i386 libasound2:i386 libc6:i386 libasound2-data seabios)

lib_deps() {
  local out
  out="$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances alsa-utils:i386 libasound2:i386 2>/dev/null)" || return 0
  sed -n 's/^ *Depends: \(lib[^ <>:]*\)\(:i386\)\{0,1\}$/\1:i386/p' <<<"$out" | sort -u
}

resolve_versions() {
  KSRC_VERSION="$(dpkg-query -W -f='${Version}' "$KSRC_PKG" 2>/dev/null)" || return 1
  [ -f "$KSRC_TAR" ] || return 1
  PKGS=("${BASE_PKGS[@]}")
  local p
  for p in $(lib_deps); do
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

cache_complete() {
  local f
  for f in bzImage initramfs.cpio.gz bios.bin versions.txt stamp; do
    [ -s "$CACHE_DIR/$f" ] || return 1
  done
}

# Fast path: asking apt costs seconds, and nothing can have changed when no
# package list or installed package (kernel source, gcc) is newer than the stamp.
if [ "${V86_GUEST_FORCE:-0}" != 1 ] && cache_complete && [ -s "$CACHE_DIR/kernel.stamp" ] &&
  [ "$(head -n2 "$CACHE_DIR/stamp")" = "script=$SCRIPT_HASH"$'\n'"config=$CONFIG_HASH" ] &&
  [ -z "$(find /var/lib/apt/lists /var/lib/dpkg/status -maxdepth 1 -newer "$CACHE_DIR/stamp" -print -quit 2>/dev/null)" ]; then
  log "guest up to date in $CACHE_DIR"
  exit 0
fi

if ! resolve_versions; then
  if [ "$(id -u)" -eq 0 ] && grep -qx i386 <<<"$(dpkg --print-foreign-architectures)"; then
    log "guest packages not found in the apt lists; running apt-get update"
    apt-get update -q >/dev/null 2>&1 || true
  fi
  if ! resolve_versions; then
    # Offline, or the lists lack i386: a complete cache built by this very
    # script from this very kernel.config is still good.
    if cache_complete && grep -q "^script=$SCRIPT_HASH\$" "$CACHE_DIR/stamp" &&
      grep -q "^config=$CONFIG_HASH\$" "$CACHE_DIR/stamp"; then
      log "warning: cannot resolve package versions (apt lists?); using the existing cache"
      exit 0
    fi
    die "cannot find $KSRC_TAR (package $KSRC_PKG from bookworm-backports) or the i386 guest packages in apt; run scripts/guest-v86/install-deps.sh first"
  fi
fi

GCC_VERSION="$(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion)"
KEY="script=$SCRIPT_HASH"$'\n'"config=$CONFIG_HASH"$'\n'"$KSRC_PKG=$KSRC_VERSION"$'\n'"gcc=$GCC_VERSION"$'\n'"$VERSIONS"
if [ "${V86_GUEST_FORCE:-0}" != 1 ] && cache_complete && [ "$(cat "$CACHE_DIR/stamp")" = "${KEY%$'\n'}" ]; then
  log "guest up to date in $CACHE_DIR ($KSRC_PKG $KSRC_VERSION)"
  exit 0
fi

START=$SECONDS
log "building the v86 guest in $CACHE_DIR"

WORK="$CACHE_DIR/work"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

# ----------------------------------------------------------------- kernel --
# The kernel has its own cache key (the function below as bash prints it,
# without comments; the config fragment; the source and compiler versions), so
# that changing only the initramfs part of this script does not recompile it.
build_kernel() {
  local src="$WORK/linux" jobs="${V86_GUEST_JOBS:-$(nproc)}" t0=$SECONDS
  log "unpacking $KSRC_TAR"
  mkdir -p "$src"
  # Documentation/ is a tenth of the tree and unused, but Kconfig sources
  # Documentation/Kconfig: skip only what lies in its subfolders.
  tar -xf "$KSRC_TAR" -C "$src" --strip-components=1 --exclude="$KSRC_PKG/Documentation/*/*" ||
    die "cannot unpack $KSRC_TAR"
  log "configuring: tinyconfig + $(basename "$FRAGMENT")"
  make -C "$src" -s ARCH=i386 tinyconfig >/dev/null || die "make tinyconfig failed"
  (cd "$src" && ARCH=i386 ./scripts/kconfig/merge_config.sh -m .config "$FRAGMENT" >"$WORK/merge.log" 2>&1) ||
    die "merge_config.sh failed: $(tail -n 20 "$WORK/merge.log")"
  make -C "$src" -s ARCH=i386 olddefconfig >/dev/null || die "make olddefconfig failed"

  # tinyconfig silently drops options whose dependencies are missing: every
  # option the fragment turns on must really be on.
  local line name missing=() extra=()
  while IFS= read -r line; do
    case "$line" in
    CONFIG_*=*) grep -qxF "$line" "$src/.config" || missing+=("$line (got: $(grep "^${line%%=*}=" "$src/.config" || echo 'not set'))") ;;
    "# CONFIG_"*" is not set")
      name="${line#\# }"
      name="${name%% *}"
      if grep -q "^$name=" "$src/.config"; then extra+=("$name"); fi
      ;;
    esac
  done <"$FRAGMENT"
  if [ "${#missing[@]}" -gt 0 ]; then
    printf '  %s\n' "${missing[@]}" >&2
    die "the kernel .config lacks ${#missing[@]} option(s) that kernel.config asks for (missing dependencies?)"
  fi
  [ "${#extra[@]}" -eq 0 ] || log "warning: still enabled although kernel.config turns them off: ${extra[*]}"

  log "make -j$jobs ARCH=i386 bzImage"
  # A fixed build user, host and date (`uname -v`) rather than this machine's and the time of the build.
  if ! KBUILD_BUILD_USER=vsnd KBUILD_BUILD_HOST=v86-guest KBUILD_BUILD_TIMESTAMP="$KSRC_PKG $KSRC_VERSION" \
    make -C "$src" -j"$jobs" ARCH=i386 bzImage >"$WORK/kbuild.log" 2>&1; then
    tail -n 40 "$WORK/kbuild.log" >&2
    die "kernel build failed"
  fi
  cp "$src/arch/x86/boot/bzImage" "$CACHE_DIR/bzImage.tmp"
  cp "$src/.config" "$CACHE_DIR/kernel.config.tmp"
  cp "$src/System.map" "$CACHE_DIR/System.map.tmp"
  KREL="$(make -C "$src" -s ARCH=i386 kernelrelease)"
  KBUILD_SECONDS=$((SECONDS - t0))
  rm -rf "$src"
}

KERNEL_KEY="$( (declare -f build_kernel && echo "$CONFIG_HASH $KSRC_PKG=$KSRC_VERSION gcc=$GCC_VERSION") | sha256sum | cut -d' ' -f1)"
if [ "${V86_GUEST_FORCE:-0}" != 1 ] && [ -s "$CACHE_DIR/bzImage" ] && [ -s "$CACHE_DIR/kernel.config" ] && [ -s "$CACHE_DIR/System.map" ] &&
  [ -f "$CACHE_DIR/kernel.stamp" ] && [ "$(head -n1 "$CACHE_DIR/kernel.stamp")" = "$KERNEL_KEY" ]; then
  KREL="$(sed -n 2p "$CACHE_DIR/kernel.stamp")"
  KBUILD_SECONDS=0
  log "kernel $KREL up to date"
else
  rm -f "$CACHE_DIR/kernel.stamp"
  build_kernel
  mv "$CACHE_DIR/bzImage.tmp" "$CACHE_DIR/bzImage"
  mv "$CACHE_DIR/kernel.config.tmp" "$CACHE_DIR/kernel.config"
  mv "$CACHE_DIR/System.map.tmp" "$CACHE_DIR/System.map"
  printf '%s\n%s\n' "$KERNEL_KEY" "$KREL" >"$CACHE_DIR/kernel.stamp"
  log "kernel $KREL built in $KBUILD_SECONDS s: $(stat -c %s "$CACHE_DIR/bzImage") bytes"
fi

# --------------------------------------------------------------- download --
DEBS="$CACHE_DIR/debs"
mkdir -p "$DEBS" "$WORK/stage" "$WORK/root"
STAGE="$WORK/stage"
ROOT="$WORK/root"

deb_file() { # deb_file PKG[:ARCH] VERSION: the downloaded .deb, if any (apt writes ':' as %3a)
  local f name="${1%:*}" arch=all
  case "$1" in *:*) arch="${1#*:}" ;; esac
  for f in "$DEBS/${name}_${2//:/%3a}_$arch.deb" "$DEBS/${name}_${2#*:}_$arch.deb"; do
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
[ -s "$STAGE/usr/share/seabios/bios.bin" ] || die "bios.bin not found in the seabios package"

# ----------------------------------------------------------------- rootfs --
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,run,out,root,usr/bin,usr/sbin,usr/share,lib}

cp "$STAGE/bin/busybox" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
# /init makes the applet links at boot (`busybox --install -s`): listing the
# applets here would mean running an i386 program on the build host.

LIBDIRS=(lib/i386-linux-gnu usr/lib/i386-linux-gnu lib usr/lib)

copy_path() { # copy_path REL: copy STAGE/REL to ROOT/REL, symbolic links as links (and their targets)
  local target
  if [ -e "$ROOT/$1" ] || [ -L "$ROOT/$1" ]; then return 0; fi
  mkdir -p "$ROOT/$(dirname "$1")"
  if [ -L "$STAGE/$1" ]; then
    target="$(readlink "$STAGE/$1")"
    ln -s "$target" "$ROOT/$1"
    case "$target" in
    /*) copy_path "${target#/}" ;;
    *) copy_path "$(dirname "$1")/$target" ;;
    esac
  else
    cp "$STAGE/$1" "$ROOT/$1"
  fi
}

needed() { # needed FILE: its ELF NEEDED entries
  readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'
}

copy_libs() { # copy_libs FILE: every library FILE loads, recursively
  local lib dir found
  for lib in $(needed "$1"); do
    found=""
    for dir in "${LIBDIRS[@]}"; do
      if [ -e "$STAGE/$dir/$lib" ]; then
        found="$dir/$lib"
        break
      fi
    done
    [ -n "$found" ] || die "$1 needs $lib, which none of the guest packages holds"
    if [ ! -e "$ROOT/$found" ]; then
      copy_path "$found"
      copy_libs "$STAGE/$found"
    fi
  done
}

copy_bin() { # copy_bin /usr/bin/NAME: the program, its interpreter and libraries
  local rel="${1#/}" interp
  [ -f "$STAGE/$rel" ] || die "$1 not found in the guest packages"
  copy_path "$rel"
  chmod 0755 "$ROOT/$rel"
  interp="$(readelf -l "$STAGE/$rel" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]$/\1/p')"
  if [ -n "$interp" ]; then
    [ -e "$STAGE$interp" ] || die "$1 needs the interpreter $interp, not in libc6:i386"
    copy_path "${interp#/}"
  fi
  copy_libs "$STAGE/$rel"
}

for b in /usr/bin/aplay /usr/bin/amixer; do
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

# Helpers for payload scripts (sourced before /payload/run.sh); the same as in
# the QEMU guest, so that payloads run in either.
cat >"$ROOT/lib/guest-lib.sh" <<'EOF'
# Sourced by /init before /payload/run.sh.
#   marker KEY VALUE...    print "@@VSND KEY=VALUE" (a result the host parses)
#   step KEY CMD ARGS...   run CMD, print its output, then "@@VSND KEY=<exit code>"
#   emit_file NAME PATH    send PATH back to the host as NAME (base64 on the
#                          console at the end: keep such files small)
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
#!/bin/busybox sh
# v86 test guest init: see scripts/guest-v86/build-v86-guest.sh.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /out
exec </dev/console >/dev/console 2>&1

echo "@@VSND boot=$(cut -d' ' -f1 /proc/uptime)"
echo "@@VSND kernel=$(uname -r)"

# The sound driver is built in: wait for its device nodes when the virtio
# sound PCI function (0x1af4:0x1059) is present.
has_pci() { # has_pci VENDOR DEVICE
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = "$1" ] && [ "$(cat "$d/device")" = "$2" ] && return 0
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
if has_pci 0x1af4 0x1059; then
  if wait_for 150 "/dev/snd/pcmC*"; then
    echo "@@VSND snd=ready"
  else
    echo "@@VSND snd=timeout"
  fi
else
  echo "@@VSND snd=absent"
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

# Return emitted files (v86 has no virtio-blk: the console is the only way).
for f in /out/*; do
  [ -f "$f" ] || continue
  echo "@@VSND-FILE-BEGIN ${f##*/} $(wc -c <"$f")"
  base64 "$f"
  echo "@@VSND-FILE-END ${f##*/}"
done

if grep -q 'vsnd.shell' /proc/cmdline; then
  setsid cttyhack sh
fi
echo "@@VSND done=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
sleep 5
echo o >/proc/sysrq-trigger
EOF
chmod 0755 "$ROOT/init"

# ----------------------------------------------------------------- output --
log "writing initramfs"
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --owner 0:0) |
  gzip -9n >"$CACHE_DIR/initramfs.cpio.gz.tmp"
cp "$STAGE/usr/share/seabios/bios.bin" "$CACHE_DIR/bios.bin.tmp"
{
  echo "# v86 guest built $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/guest-v86/build-v86-guest.sh"
  echo "kernel=$KREL"
  echo "$KSRC_PKG=$KSRC_VERSION"
  echo "gcc=$GCC_VERSION"
  echo "$VERSIONS" | sed '/^$/d'
} >"$CACHE_DIR/versions.txt"
mv "$CACHE_DIR/bios.bin.tmp" "$CACHE_DIR/bios.bin"
mv "$CACHE_DIR/initramfs.cpio.gz.tmp" "$CACHE_DIR/initramfs.cpio.gz"
printf '%s' "${KEY%$'\n'}" >"$CACHE_DIR/stamp"
log "done in $((SECONDS - START)) s: kernel $KREL ($(stat -c %s "$CACHE_DIR/bzImage") bytes), $(du -h "$CACHE_DIR/initramfs.cpio.gz" | cut -f1) initramfs"
