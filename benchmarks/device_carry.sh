#!/usr/bin/env bash
# The wheels the device image lacks (MLX-CUDA, polars, MLPerf LoadGen), carried into device calls beside this
# repository's tree: a call carries 64 MiB in all, tree included, and the tree (37 MB, 28 MB of it results
# the device never reads) leaves too little room for ../shared/device/carry-wheels.sh's 48.6 MB parts.
#
#   benchmarks/device_carry.sh pack [--from DIR] [NAME==VERSION ...]   here: the wheels (downloaded, or those
#       in DIR) into .carry-1, .carry-2, ... each within the room a call leaves beside the tree (CARRY_LIMIT
#       bytes, default 64 MiB, less the tracked files present, less 1 MiB). Whole wheels are packed largest
#       first where they fit; a wheel larger than the room travels in parts (NAME.whl.part-K-of-N). Prints
#       the folders and the calls.
#   benchmarks/device_carry.sh out | in    here: moves the folders no device call reads (HOLD) out of the tree
#       to ../threadbench-device-hold, and back. While out, the tree is dirty: pass the committed revision
#       as THREADBENCH_REVISION (gpu_sweep.sh says how).
#   benchmarks/device_carry.sh install .carry-K   on the device, in call K: copies the folder to /tmp/carry,
#       installs every wheel that is now whole (parts joined once all N have arrived) into /tmp/site (wheels
#       that share a top-level folder, as MLX's two do, merged into it), and
#       writes /tmp/carry/env.sh (PYTHONPATH, and the NVIDIA libraries MLX-CUDA loads on LD_LIBRARY_PATH).
#
# The calls, back to back (the machine goes cold 30 s after one): call K carries [".carry-K"] and runs
#   benchmarks/device_carry.sh install .carry-K && . /tmp/carry/env.sh && <what needs only what has arrived>
# With the default wheels, .carry-1 holds polars, LoadGen and MLX's front end (torch and JAX work can run in
# call 1), and MLX-CUDA is whole after the last call.
set -euo pipefail
HOLD=(results/repro results/supplementary results/timing)
root=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
cd "$root"
site=${SITE_DIR:-/tmp/site} carry=${CARRY_DIR:-/tmp/carry}   # (the tests set these)
out_dir=${CARRY_OUT:-$root}

case "${1:?pack, out, in or install .carry-K}" in
  pack)
    shift
    from=""
    if [ "${1:-}" = --from ]; then from=${2:?--from DIR}; shift 2; fi
    default=(mlx==0.32.4 mlx-cuda-13==0.32.4 polars==2.1.0 polars-runtime-32==2.1.0 mlcommons-loadgen==6.0.17)
    [ $# -gt 0 ] && pkgs=("$@") || pkgs=("${default[@]}")
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if [ -z "$from" ]; then
      from=$tmp/w
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$from" "${pkgs[@]}"
    fi
    if [ "$out_dir" = "$root" ] && exclude=$(git rev-parse --git-path info/exclude 2>/dev/null); then
      # the folders are untracked: kept out of git status (a clone may have no .git/info)
      mkdir -p "$(dirname "$exclude")"
      grep -qxF '/.carry-*/' "$exclude" 2>/dev/null || echo '/.carry-*/' >> "$exclude"
    fi
    tree=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }') || true   # files moved out: absent
    room=$(( ${CARRY_LIMIT:-67108864} - tree - 1048576 ))
    [ "$room" -gt 1048576 ] || { echo "the tree ($tree bytes) leaves no room in a call: run 'out' first" >&2; exit 2; }
    rm -rf "$out_dir"/.carry-*
    python3 - "$from" "$room" "$out_dir" <<'PY'
import math, sys
from pathlib import Path
src, room, out_dir = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
items = []   # (size, name, source, offset)
for w in sorted(src.glob("*.whl")):
    size = w.stat().st_size
    n = math.ceil(size / room)
    if n == 1:
        items.append((size, w.name, w, 0))
    else:
        step = math.ceil(size / n)
        items += [(min(step, size - k * step), f"{w.name}.part-{k + 1}-of-{n}", w, k * step) for k in range(n)]
folders = []   # first fit, largest first
for size, name, w, offset in sorted(items, key=lambda i: -i[0]):
    f = next((f for f in folders if f["used"] + size <= room), None)
    if f is None:
        folders.append(f := {"used": 0, "items": []})
    f["used"] += size
    f["items"].append((name, w, offset, size))
for k, f in enumerate(folders, 1):
    d = out_dir / f".carry-{k}"
    d.mkdir(parents=True)
    for name, w, offset, size in f["items"]:
        with open(w, "rb") as fin, open(d / name, "wb") as out:
            fin.seek(offset)
            out.write(fin.read(size))
    print(f"carry folder .carry-{k}: {f['used']:,} bytes: {', '.join(n for n, *_ in f['items'])}")
print(f"calls: {len(folders)} (room beside the tree: {room:,} bytes each); call K carries .carry-K and runs "
      "benchmarks/device_carry.sh install .carry-K")
PY
    ;;
  out)
    mkdir -p ../threadbench-device-hold
    for d in "${HOLD[@]}"; do
      [ -e "$d" ] || continue
      [ ! -e "../threadbench-device-hold/$d" ] || { echo "../threadbench-device-hold/$d exists: run 'in' first" >&2; exit 2; }
      mkdir -p "../threadbench-device-hold/$(dirname "$d")" && mv "$d" "../threadbench-device-hold/$d"
    done
    echo "moved out: ${HOLD[*]} (back with: benchmarks/device_carry.sh in)" ;;
  in)
    for d in "${HOLD[@]}"; do
      [ -e "../threadbench-device-hold/$d" ] && [ ! -e "$d" ] && mv "../threadbench-device-hold/$d" "$d"
    done
    git status --short -- "${HOLD[@]}" | head -n 3 ;;
  install)
    folder=${2:?install .carry-K}
    mkdir -p "$carry" "$site"
    cp "$folder"/* "$carry"/
    cd "$carry"
    for first in *.whl.part-1-of-*; do   # a wheel in parts: joined once every part has arrived
      [ -e "$first" ] || continue
      wheel=${first%.part-1-of-*} n=${first##*-of-}
      [ ! -e "$wheel" ] || continue
      ready=1
      for k in $(seq 1 "$n"); do [ -e "$wheel.part-$k-of-$n" ] || ready=0; done
      [ "$ready" = 1 ] && for k in $(seq 1 "$n"); do cat "$wheel.part-$k-of-$n"; done > "$wheel"
    done
    mkdir -p installed
    for w in *.whl; do
      [ -e "$w" ] && [ ! -e "installed/$w" ] || continue
      # each wheel into its own folder, then merged into the site: pip's --target replaces a top-level folder
      # that is there already (with --upgrade) or skips it (without), and MLX's two wheels share mlx/ (the
      # front end's mlx/core, MLX-CUDA's mlx/lib): either way one of them would be lost
      rm -rf "staged/$w" && mkdir -p "staged/$w"
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "staged/$w" "$w"
      cp -a "staged/$w"/. "$site"/
      touch "installed/$w"
      echo "installed: $w"
    done
    sys_site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
    libs=$(find "$sys_site/nvidia" "$site/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':' || true)
    cat > env.sh <<ENV
export PYTHONPATH=$site\${PYTHONPATH:+:\$PYTHONPATH}
export LD_LIBRARY_PATH=${libs}\${LD_LIBRARY_PATH:-}
ENV
    ;;
  *)
    echo "pack [--from DIR] [NAME==VERSION ...], out, in, or install .carry-K; not $1" >&2
    exit 2 ;;
esac
