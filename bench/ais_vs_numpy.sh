#!/usr/bin/env bash
# Forward AIS speed against a plain NumPy loop (issue 22): the same 784 x 500 Bernoulli RBM
# (one PCD epoch on binarized Fashion-MNIST, trained once by ais_bench and kept in $OUT), the
# same data (base-rate start), chains, schedule length and schedule shape, both sides on all
# CPUs, interleaved $REPEATS times; prints a Markdown table (seconds are the annealing loop
# only, each side's fastest run) and writes the raw lines to $OUT/ais_vs_numpy.jsonl.
#
#   bench/ais_vs_numpy.sh        (env: OUT, CHAINS, BETAS, REPEATS)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
CHAINS=${CHAINS:-100}
BETAS=${BETAS:-1000}
REPEATS=${REPEATS:-2}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=bench/.venv/bin/python
if [ ! -x "$PY" ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q numpy
fi
if [ ! -f "$OUT/fashion_train.npy" ]; then
  [ -d /usr/share/datasets/fashion-mnist ] || apt-get install -y dataset-fashion-mnist
  "$PY" bench/rbm_bench.py prepare "$OUT"
fi
cargo build -q --release -p ebm-engine --example ais_bench
# the machine's f32 GEMM rate (1024^3, the `gemm` crate), measured in the same run
cargo bench -q -p ebm-engine --bench rbm_epoch -- gemm > "$OUT/ais_gemm.json"
cat "$OUT/ais_gemm.json"
bin=${CARGO_TARGET_DIR:-target}/release/examples/ais_bench
model="$OUT/fashion_rbm500_e1.safetensors"
log="$OUT/ais_vs_numpy.jsonl"
: >"$log"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/ais_vs_numpy.txt"
for r in $(seq 1 "$REPEATS"); do
  "$bin" --data "$OUT/fashion_train.npy" --model "$model" --hidden 500 --epochs 1 \
    --chains "$CHAINS" --betas "$BETAS" --seed "$r" --verify-max-seconds 0 | grep '"run"' | tee -a "$log"
  "$PY" bench/ais_numpy.py "$model" "$OUT/fashion_train.npy" "$CHAINS" "$BETAS" "$r" | tee -a "$log"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/ais_vs_numpy.txt"
"$PY" - "$log" "$CHAINS" "$BETAS" "$OUT/ais_gemm.json" <<'PYEOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
gemm = json.load(open(sys.argv[4]))
ours = [l["run"] for l in lines if "run" in l]
peer = [l["numpy"] for l in lines if "numpy" in l]
chains, betas = int(sys.argv[2]), int(sys.argv[3])
best_o = min(ours, key=lambda r: r["seconds"]); best_p = min(peer, key=lambda r: r["seconds"])
flop = 2 * 2 * 784 * 500 * chains * betas  # two 784 x 500 products per chain-transition
rate = gemm["gemm_gflops"]
print("GEMM rate (1024^3 f32, same run): %.1f GFLOP/s\n" % rate)
print("| side | seconds (best of %d) | chain-transitions/s | GFLOP/s in the products (share of GEMM rate) | ln Z (per run) |" % len(ours))
print("| --- | --- | --- | --- | --- |")
for name, runs, best in [("ebm engine, cpu", ours, best_o), ("NumPy loop", peer, best_p)]:
    zs = ", ".join("%.2f +- %.2f" % (r["log_z"], r["stderr"]) for r in runs)
    g = flop / best["seconds"] / 1e9
    print("| %s | %.2f | %.0f | %.1f (%.0f%%) | %s |" % (name, best["seconds"], chains * betas / best["seconds"], g, 100 * g / rate, zs))
print("\nspeed-up (NumPy seconds / ours): %.2fx" % (best_p["seconds"] / best_o["seconds"]))
PYEOF
