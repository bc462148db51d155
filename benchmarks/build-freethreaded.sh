#!/usr/bin/env bash
# Builds a free-threaded CPython 3.13 (./configure --disable-gil) from Debian trixie's source package, and a
# venv with the frameworks' free-threaded (cp313t) wheels, for threadbench's interpreter axis (issue 21):
#   benchmarks/build-freethreaded.sh [--minimal | --frameworks]
#     --minimal     numpy, psutil, scipy: what the cell worker needs to run its test backends (the default)
#     --frameworks  the minimal tier plus torch (the CUDA build, ~5 GB, runs on the CPU), mlx[cpu], onnxruntime,
#                   and jax[cpu] where its cp313t wheel installs
# Interpreter: ${THREADBENCH_FT_HOME:-~/.cache/threadbench/freethreaded}/bin/python3.13t, venv: $PREFIX/venv.
# A working interpreter there is reused and pip keeps what is installed, so a second run takes 20-32 s here.
# Needs Debian (bookworm or later) and root or sudo for apt. It adds a deb-src-only entry for trixie,
# /etc/apt/sources.list.d/threadbench-trixie-src.sources (remove it when done; no binary package comes from it),
# and installs only the missing build dependencies from the system's own release. On a shared 2-core machine
# run it under `nice -n 19`; the build takes 4 to 9 minutes on 2 cores, the frameworks tier 5.5 GB of disk.
# The source is checked five ways before it is built, and the script stops at the first failure: apt checks
# the .dsc and tarballs against trixie's Sources index, signed by the Debian archive key; their sha256 sums
# are pinned below; the .dsc's uploader signature is checked with gpgv against debian-keyring; dpkg-source
# checks the tarballs' sha256 against the .dsc; the upstream tarball's signature by the 3.13 release manager
# (fingerprint pinned below) is checked with gpgv.
set -euo pipefail

DEB_VERSION=3.13.5-2+deb13u5                 # python3.13 in trixie; the archive keeps only its newest revision
UPSTREAM_VERSION=3.13.5
DSC_SHA256=4be84e20fb902354fa86955e2fbea6e8bdbd158f54833423488308a9b3532662
ORIG_SHA256=93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640
# Thomas Wouters, release manager of 3.13 (python.org/downloads/metadata/pgp); his key expired 2026-07-02,
# after he signed 3.13.5, so gpgv reports EXPKEYSIG with a VALIDSIG: the signature is checked, not its age.
UPSTREAM_SIGNER=7169605F62C751356D054A26A821E680E5FA6305
# Debian's patches that are upstream fixes (security and crash fixes backported to 3.13) start here in its
# series; the ones before it, and the two below, are Debian's packaging (file layout, multiarch, a disabled
# ensurepip, docs), wrong for a private prefix.
FIRST_UPSTREAM_FIX=gchead-alignment.diff
SKIP_PATCHES="no-sphinx-8.2.diff Add-Debian-specific-documentation-path-to-IDLE-menu.diff"
# The modules' libraries (ssl for pip, ctypes, zlib, bz2, lzma; sqlite3, readline, curses, uuid cheap extras)
# and the tools that fetch and check the source. Not `apt-get build-dep python3.13`: on bookworm it does not
# resolve (it wants python3-setuptools-whl >= 70.1), and it would bring Tk, BlueZ, locales-all, Xvfb,
# Sphinx and valgrind for modules, docs and tests a benchmark interpreter does not need.
BUILD_DEPS="build-essential pkg-config xz-utils patch dpkg-dev gpgv debian-keyring libssl-dev libffi-dev
  zlib1g-dev libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev uuid-dev"
# Without the test suite (140 MB of Lib/test and the _test* modules), which a benchmark interpreter never runs.
CONFIGURE_FLAGS="--disable-gil --disable-test-modules --with-ensurepip=install"
REQUIRED_MODULES="ssl ctypes zlib bz2 lzma"   # without these the build counts as failed
OPTIONAL_MODULES="sqlite3 readline curses _uuid"
# Every pip install in the venv runs under these pins as constraints, so no dependency can pull another
# torch (2.12.0 is the last torch with cp313t wheels) or move numpy under a framework. Each is the newest
# release with a cp313t wheel for x86-64 Linux when this was written (numpy 2.5 and scipy 1.18 have none).
MINIMAL_PINS="numpy==2.4.6 psutil==7.2.2 scipy==1.17.1"
FRAMEWORK_PINS="torch==2.12.0 mlx[cpu]==0.32.4 onnxruntime==1.32.0 onnx==1.21.0"   # onnx: the ort plug-in builds its model with it
OPTIONAL_PINS="jax[cpu]==0.10.2"               # installed where its cp313t wheel installs; a failure is reported

PREFIX=${THREADBENCH_FT_HOME:-$HOME/.cache/threadbench/freethreaded}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=$PREFIX/bin/python3.13t
VENV=$PREFIX/venv
STAMP=$PREFIX/.threadbench-build
STAMP_TEXT="python3.13 $DEB_VERSION $CONFIGURE_FLAGS, Debian's upstream fixes from $FIRST_UPSTREAM_FIX"
SOURCES_FILE=/etc/apt/sources.list.d/threadbench-trixie-src.sources
APT_STRICT="-o APT::Get::AllowUnauthenticated=false -o Acquire::AllowInsecureRepositories=false
  -o Acquire::AllowDowngradeToInsecureRepositories=false"

tier=minimal
case "${1:-}" in
  ""|--minimal) ;;
  --frameworks) tier=frameworks ;;
  *) echo "build-freethreaded.sh: unknown option '$1'; use --minimal or --frameworks" >&2; exit 2 ;;
esac

say() { printf '== %s\n' "$*"; }
die() { printf 'build-freethreaded.sh: %s\n' "$*" >&2; exit 1; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "needs root or sudo to run: $*"; fi
}
signed_by() {  # signed_by KEYRING FINGERPRINT_PATTERN FILE...: gpgv finds a valid signature by a key not revoked
  local status; status=$(gpgv --status-fd 1 --keyring "$1" "${@:3}" 2>/dev/null || true)
  grep "^\[GNUPG:\] VALIDSIG $2 " <<<"$status" >/dev/null && ! grep '^\[GNUPG:\] REVKEYSIG ' <<<"$status" >/dev/null
}
elapsed() { local s=$(( $(date +%s) - $1 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

interpreter_ok() {  # the pinned build is there, free-threaded, with its required modules
  [ -x "$PYTHON" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$STAMP_TEXT" ] && env -u PYTHON_GIL "$PYTHON" -c "
import sys, sysconfig, ${REQUIRED_MODULES// /, }
assert sysconfig.get_config_var('Py_GIL_DISABLED') == 1 and sys.version_info[:3] == (${UPSTREAM_VERSION//./, })
" 2>/dev/null
}

build() {
  command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || die "needs Debian's apt and dpkg"
  local missing="" pkg
  for pkg in $BUILD_DEPS; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep '^install ok installed' >/dev/null || missing="$missing $pkg"
  done
  if [ -z "$(apt-cache showsrc python3.13 2>/dev/null | grep -x "Version: $DEB_VERSION")" ]; then
    say "adding trixie's source index (deb-src only: apt sees no trixie binary package) at $SOURCES_FILE"
    as_root tee "$SOURCES_FILE" >/dev/null <<EOF
# threadbench benchmarks/build-freethreaded.sh: trixie source packages only, to build python3.13.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    as_root apt-get $APT_STRICT update -qq
    apt-cache showsrc python3.13 | grep -x "Version: $DEB_VERSION" >/dev/null \
      || die "python3.13 $DEB_VERSION is no longer in trixie's source index; update DEB_VERSION and the pins"
  fi
  if [ -n "$missing" ]; then
    say "installing build dependencies from the system's release:$missing"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get $APT_STRICT install -y -q --no-install-recommends $missing
  fi

  work=$(mktemp -d "${TMPDIR:-/tmp}/threadbench-ft-build.XXXXXX")
  trap 'cd / && rm -rf "$work"' EXIT   # the verified source and its build, kept only while the script runs
  cd "$work"
  say "fetching python3.13=$DEB_VERSION into $work"
  apt-get $APT_STRICT source --download-only -q "python3.13=$DEB_VERSION"
  local dsc=python3.13_$DEB_VERSION.dsc orig=python3.13_$UPSTREAM_VERSION.orig.tar.xz
  say "checking the source"
  printf '%s  %s\n%s  %s\n' "$DSC_SHA256" "$dsc" "$ORIG_SHA256" "$orig" | sha256sum --strict -c - \
    || die "$dsc or $orig does not match the sha256 pinned in this script"
  signed_by /usr/share/keyrings/debian-keyring.gpg '[0-9A-F]*' "$dsc" \
    || die "$dsc: no valid signature by a key in /usr/share/keyrings/debian-keyring.gpg"
  # dpkg-source's own signature check refuses bookworm's debian-keyring (2022), whose binding signature for
  # the uploader's key uses SHA1, hence gpgv above; the checksums it checks are the point here.
  dpkg-source --require-strong-checksums --skip-patches -x "$dsc" src > dpkg-source.log 2>&1 \
    || { cat dpkg-source.log; die "dpkg-source refused $dsc"; }
  gpg --dearmor < src/debian/upstream/signing-key.asc > upstream-key.gpg
  signed_by ./upstream-key.gpg "$UPSTREAM_SIGNER" "$orig.asc" "$orig" \
    || die "$orig: no valid signature by $UPSTREAM_SIGNER"
  say "source checked: sha256 pinned, .dsc signed by a Debian developer, tarballs match it, upstream signed"

  cd src
  local on=0 applied=0 patch
  for patch in $(grep -v '^#' debian/patches/series); do
    [ "$patch" = "$FIRST_UPSTREAM_FIX" ] && on=1
    [ $on = 1 ] && [[ " $SKIP_PATCHES " != *" $patch "* ]] || continue
    patch -p1 -F0 --forward --batch --quiet --no-backup-if-mismatch < "debian/patches/$patch" \
      || die "Debian's $patch does not apply cleanly to $UPSTREAM_VERSION"
    applied=$((applied + 1))
  done
  say "applied $applied of Debian's upstream fixes (from $FIRST_UPSTREAM_FIX on, without fuzz)"

  local start jobs=${THREADBENCH_FT_JOBS:-$(nproc)}; start=$(date +%s)
  say "configure, make -j$jobs, make altinstall into $PREFIX (4 to 9 minutes on 2 cores)"
  # gcc 12 prints pages of warnings on 3.13's sources: the log is shown only when a step fails.
  { ./configure $CONFIGURE_FLAGS --prefix="$PREFIX" && make -j"$jobs" && make altinstall; } > build.log 2>&1 \
    || { tail -n 40 build.log; die "the build failed; the last 40 lines of its log are above"; }
  local module
  for module in $REQUIRED_MODULES; do
    "$PYTHON" -c "import $module" \
      || { grep -A3 'necessary bits\|Failed to build' build.log; die "the build has no $module module"; }
  done
  for module in $OPTIONAL_MODULES; do
    "$PYTHON" -c "import $module" 2>/dev/null || say "note: the build has no $module module"
  done
  echo "$STAMP_TEXT" > "$STAMP"
  say "built in $(elapsed "$start"): $(du -sh "$PREFIX" | cut -f1) in $PREFIX"
}

install_tier() {  # pip, binary wheels only, every pin a constraint
  local constraints="$PREFIX/constraints.txt" start spec failed=""
  printf '%s\n' $MINIMAL_PINS $FRAMEWORK_PINS $OPTIONAL_PINS | sed 's/\[[a-z]*\]//' > "$constraints"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local pip=("$VENV/bin/python" -m pip install -q --no-cache-dir --disable-pip-version-check
             --only-binary :all: -c "$constraints")
  start=$(date +%s)
  "${pip[@]}" $MINIMAL_PINS
  say "minimal tier ($MINIMAL_PINS) in $(elapsed "$start"): venv $(du -sh "$VENV" | cut -f1)"
  [ "$tier" = frameworks ] || return 0
  start=$(date +%s)
  for spec in $FRAMEWORK_PINS; do "${pip[@]}" "$spec" || failed="$failed $spec"; done
  for spec in $OPTIONAL_PINS; do "${pip[@]}" "$spec" || say "note: $spec does not install under $PYTHON"; done
  # the repository's plug-ins (ort, jax), so that their entry points are found under this interpreter too;
  # their dependencies are the pins above (threadbench itself reaches the worker through PYTHONPATH)
  "${pip[@]}" --no-deps "$REPO/plugins/threadbench-onnxruntime" "$REPO/plugins/threadbench-jax" ||
    failed="$failed plug-ins"
  say "frameworks tier in $(elapsed "$start"): venv $(du -sh "$VENV" | cut -f1)"
  [ -z "$failed" ] || die "did not install:$failed"
}

report() {  # each package imported in a fresh process, with a small op so lazily loaded extensions load too
  say "interpreter $PYTHON"
  env -u PYTHON_GIL "$VENV/bin/python" -c 'import sys, sysconfig
print("sys.version:", sys.version); print("Py_GIL_DISABLED:", sysconfig.get_config_var("Py_GIL_DISABLED"))'
  local name
  for name in numpy psutil scipy torch mlx onnxruntime jax; do
    "$VENV/bin/python" -m pip show -q "$name" >/dev/null 2>&1 || continue
    env -u PYTHON_GIL "$VENV/bin/python" - "$name" <<'EOF' || echo "$name: import failed"
import importlib.metadata, sys, warnings
name = sys.argv[1]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if name == "numpy":
        import numpy; numpy.ones(4).sum()
    elif name == "psutil":
        import psutil; psutil.cpu_percent()
    elif name == "scipy":
        import scipy.linalg, scipy.stats; scipy.stats.t.ppf(0.975, 4)
    elif name == "torch":
        import torch; (torch.ones(4, 4) @ torch.ones(4, 4)).sum().item()
    elif name == "mlx":
        import mlx.core as mx; mx.eval(mx.ones((4, 4)) @ mx.ones((4, 4)))
    elif name == "onnxruntime":
        import onnxruntime; onnxruntime.get_available_providers()
    elif name == "jax":
        import jax.numpy as jnp; jnp.ones((4, 4)).sum().block_until_ready()
warned = [str(w.message).splitlines()[0] for w in caught if issubclass(w.category, RuntimeWarning)]
state = "GIL re-enabled" if sys._is_gil_enabled() else "GIL still off"
print(f"{name} {importlib.metadata.version(name)}: {state}" + (f" ({warned[0]})" if warned else ""))
EOF
  done
}

if interpreter_ok; then
  say "reusing $PYTHON ($STAMP_TEXT)"
else
  start=$(date +%s)
  build
  say "build step in $(elapsed "$start")"
fi
install_tier
report
"$VENV/bin/python" -m pip freeze --all > "$PREFIX/freeze.txt"
say "disk: $(du -sh --exclude=venv "$PREFIX" | cut -f1) interpreter, $(du -sh "$VENV" | cut -f1) venv;" \
  "versions in $PREFIX/freeze.txt"
