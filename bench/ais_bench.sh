#!/usr/bin/env bash
# AIS speed (issue 4): trains a 784 x 500 Bernoulli RBM on binarized Fashion-MNIST (one PCD
# epoch by default; the model is kept in $OUT and reused), then measures forward AIS on the
# cpu backend: chain-transitions per second, the standard error of ln Z at several schedule
# lengths with $CHAINS chains, and the chains x betas (and wall time) that reach a standard
# error of $TARGET nats; the cheapest plan is run to check it. Results: $OUT/ais.jsonl.
#
#   bench/ais_bench.sh        (env: OUT, EPOCHS, CHAINS, BETAS, TARGET, VERIFY_MAX_SECONDS)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
EPOCHS=${EPOCHS:-1}
CHAINS=${CHAINS:-100}
BETAS=${BETAS:-1000,3000,10000}
TARGET=${TARGET:-0.05}
VERIFY_MAX_SECONDS=${VERIFY_MAX_SECONDS:-900}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ ! -f "$OUT/fashion_train.npy" ]; then
  if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    apt-get install -y dataset-fashion-mnist
  fi
  # the conversion needs only numpy (bench/rbm_vs_sklearn.sh's venv has it)
  PY=python3
  [ -x bench/.venv/bin/python ] && PY=bench/.venv/bin/python
  "$PY" bench/rbm_bench.py prepare "$OUT"
fi
cargo build -q --release -p ebm-engine --example ais_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/ais_bench
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/ais.txt"
"$bin" --data "$OUT/fashion_train.npy" --model "$OUT/fashion_rbm500_e${EPOCHS}.safetensors" \
  --hidden 500 --epochs "$EPOCHS" --chains "$CHAINS" --betas "$BETAS" --target "$TARGET" \
  --verify-max-seconds "$VERIFY_MAX_SECONDS" | tee "$OUT/ais.jsonl"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/ais.txt"
