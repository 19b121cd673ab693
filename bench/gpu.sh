#!/usr/bin/env bash
# GPU benchmark of the cube backend (issue 5): checks every kernel against the CPU backend,
# then times RBM Gibbs sweeps (784x500, 1k and 10k chains), the tiled matmul, lattice
# Ising flips/ns (L = 1024 and 4096) and RBM AIS transitions/s, and writes a Markdown table.
#
# The lent GPU machine has CUDA (driver + NVRTC) but no Rust toolchain and no network, so:
#   1. here (any machine with the repo and cargo):   bash bench/gpu.sh build
#      builds examples/backend_bench with --features cuda,wgpu (release) into bench/bin/
#      (git-ignored; carry it: run(..., carry=["bench/bin"])).
#   2. on the GPU machine:                            bash bench/gpu.sh run
#      runs the carried binary (or builds it first if cargo is there), check first, then
#      timings; everything under 8 minutes (timeout 450 s). Output: bench/out/gpu-table.md
#      (and $OUT/gpu-table.md when $OUT is set, as on the device runner).
#   Smoke test first on a new machine:                bash bench/gpu.sh smoke
#      (starts the binary, prints the device, runs only the check: ~30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=bench/bin/backend_bench
mode="${1:-run}"

build() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
    cargo build --release -p ebm-engine --example backend_bench --features cuda,wgpu
    mkdir -p bench/bin
    cp "$CARGO_TARGET_DIR/release/examples/backend_bench" "$BIN"
    strip "$BIN" 2>/dev/null || true
    ls -lh "$BIN"
}

describe() {
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || echo "no nvidia-smi"
    uname -a
}

case "$mode" in
build)
    build
    ;;
smoke)
    [ -x "$BIN" ] || { command -v cargo >/dev/null && build; }
    describe
    timeout 120 "$BIN" --backends cuda --check --small
    ;;
run)
    [ -x "$BIN" ] || { command -v cargo >/dev/null && build; }
    [ -x "$BIN" ] || { echo "no $BIN: run 'bash bench/gpu.sh build' where cargo is and carry bench/bin" >&2; exit 2; }
    mkdir -p bench/out
    describe | tee bench/out/gpu-machine.txt
    start=$(date +%s)
    # cuda: check + full sizes; cpu: the same RBM sizes for the ratio (its lattice/AIS
    # numbers come from the engine's own benchmarks).
    timeout 450 "$BIN" --backends cuda,cpu --check --out bench/out/gpu-table.md 2>&1 | tee bench/out/gpu-log.txt
    echo "elapsed $(( $(date +%s) - start )) s"
    if [ -n "${OUT:-}" ]; then cp bench/out/gpu-table.md bench/out/gpu-log.txt bench/out/gpu-machine.txt "$OUT"/; fi
    ;;
*)
    echo "usage: bench/gpu.sh build|smoke|run" >&2
    exit 2
    ;;
esac
