#!/usr/bin/env bash
# Boltzmann-machine DCA on PF00014 (data/msa/PF00014.fasta), our CPU trainer side by side with
# adabmDCA 1.0.0 (PyPI, PyTorch on CPU, installed here in a virtual environment), on the same
# sequences (bench/clean_msa.py: match columns, sequences with unknown letters dropped,
# duplicates removed, because adabmDCA refuses unknown letters and removes duplicates) and the
# same settings: CHAINS chains, SWEEPS sweeps per update, SGD learning rate 0.01, 80% identity
# reweighting, pseudocount 1/M_eff, UPDATES gradient updates. Prints time per update and the
# Pearson correlation of connected correlations after the same number of updates, as each
# trainer logs it (on its persistent training chains), and then the Pearson of both final
# models on fresh equilibrated chains, both scored by adabmDCA's own sampler and code
# (bench/potts_equilibrium_pearson.py; EQ_SWEEPS sweeps, EQ=0 skips it).
# Usage: bench/potts_vs_adabmdca.sh   (env: UPDATES=20 CHAINS=1000 SWEEPS=10 SAMPLER=metropolis
#        SEED=1 EQ_SWEEPS=200; ADA=0 skips adabmDCA, EBM=0 skips ours)
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATES=${UPDATES:-20}
CHAINS=${CHAINS:-1000}
SWEEPS=${SWEEPS:-10}
SAMPLER=${SAMPLER:-metropolis}
SEED=${SEED:-1}
WORK=${WORK:-$(mktemp -d)}
VENV=${VENV:-$WORK/venv}
if [ ! -x "$VENV/bin/adabmDCA" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q adabmdca==1.0.0
fi
python3 bench/clean_msa.py data/msa/PF00014.fasta "$WORK/pf14.fasta"
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "== ebm (CPU backend)"
rm -f "$WORK/ebm.txt" "$WORK/ebm.safetensors"
if [ "${EBM:-1}" = 1 ]; then
  cargo bench -q -p ebm-engine --bench potts_dca -- "$UPDATES" "$CHAINS" "$SWEEPS" "$SAMPLER" "$WORK/pf14.fasta" "$SEED" "$WORK/ebm.safetensors" | tee "$WORK/ebm.txt"
fi
[ "${ADA:-1}" = 1 ] || exit 0
echo "== adabmDCA 1.0.0 (PyTorch CPU, $(nproc) threads)"
rm -rf "$WORK/ada"
"$VENV/bin/adabmDCA" train -d "$WORK/pf14.fasta" -o "$WORK/ada" --nchains "$CHAINS" --nsweeps "$SWEEPS" \
  --lr 0.01 --sampler "$SAMPLER" --nepochs "$UPDATES" --device cpu --no-progress --seed "$SEED" > "$WORK/ada.stdout" 2>&1
python3 - "$WORK/ada/adabmDCA.log" "$WORK/ebm.txt" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.split() and l.split()[0].isdigit()]
last = rows[-1]
steps, pearson, elapsed = int(last[2]), float(last[5]), float(last[-1])
first = float(rows[0][-1])
per = (elapsed - first) / max(steps - 1, 1)
print(f"adabmDCA: updates={steps} mean_update_s={per:.4f} (first update {first:.3f} s) pearson={pearson:.4f}")
import os
if not os.path.exists(sys.argv[2]):
    sys.exit(0)  # EBM=0: adabmDCA only
ebm = [l for l in open(sys.argv[2]) if l.startswith("RESULT")][-1].split()
fields = dict(kv.split("=") for kv in ebm[1:])
ours = float(fields["mean_update_with_metrics_s"])
print(f"ebm:      updates={fields['updates']} mean_update_s={ours:.4f} (sampling+gradient {float(fields['mean_update_s']):.4f}) pearson={float(fields['pearson']):.4f}")
print(f"speed-up per update: {per / ours:.1f}x")
PY
if [ "${EQ:-1}" = 1 ] && [ -f "$WORK/ebm.safetensors" ]; then
  echo "== equilibrium Pearson of both final models (adabmDCA's sampler and Pearson, ${EQ_SWEEPS:-200} $SAMPLER sweeps)"
  "$VENV/bin/python" bench/potts_equilibrium_pearson.py "$WORK/pf14.fasta" "$SAMPLER" "${EQ_SWEEPS:-200}" "$SEED" \
    "$WORK/ebm.safetensors" "$WORK/ada/params.dat"
fi
