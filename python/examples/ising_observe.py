"""Macrostates of the 2-D Ising model across the phase transition: import lattice models at
several temperatures and `observe` the magnetization under each.

    python python/examples/ising_observe.py [--server URL] [--size L] [--samples N]

E(s) = -J sum_<ij> s_i s_j on a periodic L x L lattice, with J = 1/T (the temperature folded
into the coupling). Below T_c = 2 / ln(1 + sqrt 2) ~ 2.269 the magnetization's histogram has
two modes near +-m (ordered phase); above it, one mode at 0. The most likely microstate
(all spins up: map_statistic = 1) looks the same at every temperature, which is why the
macrostate is the useful summary.
"""
import argparse

import numpy as np

from ebm_client import Client

parser = argparse.ArgumentParser()
parser.add_argument("--server", default=None)
parser.add_argument("--size", type=int, default=16)
parser.add_argument("--samples", type=int, default=2000)
args = parser.parse_args()

client = Client(args.server)
print(f"{'T':>5} {'mean |m|':>9} {'std':>6}  modes of m            map m")
for T in (1.5, 2.0, 2.27, 2.6, 3.5):
    model = client.import_model(
        {"J": np.array(1.0 / T, np.float32), "h": np.array(0.0, np.float32)},
        type="lattice_ising", name=f"ising-T{T}", metadata={"size": args.size},
    )
    seen = client.observe(model, "magnetization", samples=args.samples, burn_in=500, chains=8, bins=41, seed=1)
    centres = (seen.edges[:-1] + seen.edges[1:]) / 2
    mean_abs = float((np.abs(centres) * seen.counts).sum() / seen.counts.sum())
    modes = ", ".join(f"{m:+.2f}" for m in seen.modes[:3])
    print(f"{T:5.2f} {mean_abs:9.3f} {seen.std:6.3f}  {modes:20s}  {seen.map_statistic:+.2f}")
    bars = (seen.counts / max(seen.counts.max(), 1) * 8).round().astype(int)
    print("       " + "".join(" .:-=+*#%@"[min(b, 9)] for b in bars) + "   (histogram of m, -1 .. +1)")
