#!/usr/bin/env bash
# Held-out log-likelihood of our CPU RBM and scikit-learn's BernoulliRBM over several seeds
# (Fashion-MNIST, 784 x HIDDEN: exact LL by enumerating the hidden layer for 20 units, forward
# AIS with the same seed and settings for both sides for 500 (AIS=chains,betas); same settings as
# bench/rbm_vs_sklearn.sh: PCD-1, chains = batch, plain SGD, learning rate LR). One seed per
# row of the main benchmark is not enough to call one side better: the spread between seeds
# is tens of nats. Prints one line per (batch, epochs, side, seed) and a mean +- standard
# error per (batch, epochs, side).
#   bench/rbm_ll_seeds.sh     (env: HIDDEN=20 BATCHES="10 100" EPOCHS="2 10" SEEDS="1 2 3 4" LR=0.05
#                              INIT=zero SHUFFLE=false AIS=100,10000
#                              VENV, OUT as in bench/rbm_vs_sklearn.sh, which prepares OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
VENV=${VENV:-bench/.venv}
LR=${LR:-0.05}
INIT=${INIT:-zero}   # our train.visible_bias_init: zero (scikit-learn's start) or data
SHUFFLE=${SHUFFLE:-false}   # our train.shuffle: false (scikit-learn's order) or true
HIDDEN=${HIDDEN:-20}
AIS=${AIS:-$([ "$HIDDEN" -le 20 ] && echo 0 || echo 100,10000)}   # exact LL up to 20 hidden units
OUT=$(cd "$OUT" && pwd)
[ -f "$OUT/fashion_train.npy" ] || { echo "run bench/rbm_vs_sklearn.sh first (it prepares $OUT)"; exit 1; }
bench() { cargo bench -q -p ebm-engine --bench rbm_epoch -- "$@"; }
# The exact held-out LL where there is one, else the AIS estimate (value+-stderr).
ll() {
  sed -n -e 's/.*"heldout_log_likelihood": \([-0-9.][-0-9.]*\).*/\1/p' \
    -e 's/.*"heldout_log_likelihood": null, "heldout_ais_log_likelihood": \([-0-9.]*\), "heldout_ais_stderr": \([0-9.]*\).*/\1+-\2/p'
}
rows=$(mktemp)
for b in ${BATCHES:-10 100}; do
  for e in ${EPOCHS:-2 10}; do
    for s in ${SEEDS:-1 2 3 4}; do
      ours=$(bench train --data "$OUT/fashion_train.npy" --heldout "$OUT/fashion_heldout.npy" \
        --hidden "$HIDDEN" --batch "$b" --epochs "$e" --lr "$LR" --seed "$s" --init "$INIT" --shuffle "$SHUFFLE" --ais "$AIS" | ll)
      sk=$(OPENBLAS_NUM_THREADS=1 "$VENV/bin/python" bench/rbm_bench.py sklearn "$OUT" fashion "$HIDDEN" "$b" "$e" "$LR" "$s")
      params=$(echo "$sk" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["params"])')
      theirs=$(bench eval --params "$params" --data "$OUT/fashion_train.npy" --heldout "$OUT/fashion_heldout.npy" --ais "$AIS" | ll)
      echo "hidden=$HIDDEN batch=$b epochs=$e seed=$s ebm=$ours sklearn=$theirs" | tee -a "$rows"
    done
  done
done
"$VENV/bin/python" - "$rows" <<'PY'
import re, statistics as st, sys
groups = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=") for kv in line.split())
    for side in ("ebm", "sklearn"):
        # "value" (exact) or "value+-stderr" (AIS: the per-seed AIS error is small next to
        # the spread between seeds, which the standard error below measures)
        groups.setdefault((int(f["batch"]), int(f["epochs"]), side), []).append(float(f[side].split("+-")[0]))
print("| batch | epochs | side | seeds | held-out LL per seed | mean +- se |")
print("|---|---|---|---|---|---|")
for (b, e, side), v in sorted(groups.items()):
    se = st.stdev(v) / len(v) ** 0.5 if len(v) > 1 else float("nan")
    print(f"| {b} | {e} | {side} | {len(v)} | {', '.join(f'{x:.1f}' for x in v)} | {st.mean(v):.1f} +- {se:.1f} |")
PY
