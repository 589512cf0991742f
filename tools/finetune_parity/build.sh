#!/usr/bin/env bash
# Build pjreddie's Darknet (CPU, OpenMP, its Makefile's -Ofast) and the parity harness against it.
#   tools/finetune_parity/build.sh DARKNET_DIR OUT      e.g. DARKNET_DIR = a checkout of github.com/pjreddie/darknet
set -euo pipefail
darknet=${1:?usage: build.sh DARKNET_DIR OUT}
out=${2:?usage: build.sh DARKNET_DIR OUT}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$(dirname "$out")"
[ -f "$darknet/libdarknet.a" ] || make -C "$darknet" OPENMP=1 -j"$(nproc)" libdarknet.a
gcc -O2 -Wall -fopenmp -I"$darknet/include" -I"$darknet/src" "$here/harness.c" "$darknet/libdarknet.a" \
    -lm -pthread -o "$out"
echo "built $out"
