#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what scripts/gpu-check.sh needs on the lent GPU machine, which
# reaches no package registry, and check that the call can start (64 MiB carry limit, working tree
# included; this script refuses above 60 MiB):
#   .gpu/prefix/  files of the Debian packages below, rooted like /usr: Catch2, fmt, CLI11,
#                 nlohmann-json, stb, libjpeg-turbo, libpng (headers, CMake packages, shared
#                 libraries, libCatch2WithMain.a);
#   .gpu/data/    the CIFAR-10 JPEG archive (19 MB) and its converter, from ../shared/data.
# No OpenBLAS: gpu-check.sh builds with -DMINIDL_BLAS=OFF (minidl's own CPU GEMM for the CPU
# references). Its OpenMP build alone is 36 MB and needs libgfortran, which the GPU machine may not
# have; --openblas adds both anyway (about 60 MiB in all: expect a refusal).
#
# Usage: scripts/pack-gpu.sh [--dest DIR] [--openblas]      (DIR defaults to ./.gpu)
# This does what ../shared/tools/pack-for-device.sh does, for a fixed package list, and also works
# in a git worktree (where that tool fails writing .git/info/exclude, .git being a file there).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dest=$root/.gpu
openblas=0
while [ $# -gt 0 ]; do
  case $1 in
    --dest) dest=$2; shift 2 ;;
    --openblas) openblas=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "pack-gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
shared=${MINIDL_SHARED_DIR:-$root/../shared}
data_src=$shared/data
arch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)

pkgs=(catch2 libfmt-dev libfmt9 libcli11-dev nlohmann-json3-dev libstb-dev libturbojpeg0-dev libturbojpeg0
      libpng-dev libpng16-16)
[ "$openblas" = 1 ] && pkgs+=(libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0)

missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ -f "$data_src/cifar10-jpeg.tar.gz" ] || missing+=("$data_src/cifar10-jpeg.tar.gz")
[ -f "$data_src/cifar10_from_jpeg.py" ] || missing+=("$data_src/cifar10_from_jpeg.py")
if [ ${#missing[@]} -gt 0 ]; then
  echo "pack-gpu.sh: missing here: ${missing[*]} (scripts/setup.sh installs the packages)" >&2
  exit 3
fi

rm -rf "$dest"
mkdir -p "$dest/prefix" "$dest/data"
for p in "${pkgs[@]}"; do
  dpkg -L "$p" | grep '^/usr/' | grep -v '^/usr/share/doc' | while read -r f; do
    [ -f "$f" ] || [ -L "$f" ] || continue
    case $f in
      # Static archives are big and unused, except Catch2's: its CMake package fails to load
      # when libCatch2WithMain.a is missing.
      *libCatch2WithMain.a) ;;
      *.a) continue ;;
      # OpenBLAS: only the OpenMP libopenblas and cblas.h (not its LAPACK and BLAS copies).
      */openblas-openmp/liblapack*|*/openblas-openmp/libblas*) continue ;;
    esac
    out="$dest/prefix/${f#/usr/}"
    mkdir -p "$(dirname "$out")"
    cp -a "$f" "$out"
  done
done
cp "$data_src/cifar10-jpeg.tar.gz" "$data_src/cifar10_from_jpeg.py" "$dest/data/"
echo "packed ${#pkgs[@]} packages ($arch) and the CIFAR-10 archive into $dest"

# The limit applies to everything that travels: .gpu plus the tracked and untracked-not-ignored
# files of the working tree (build directories are ignored and do not travel).
bash "$root/scripts/gpu-check.sh" --carry-size --gpu-dir "$dest"
