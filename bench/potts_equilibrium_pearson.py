"""Pearson of connected correlations of *equilibrated* samples of trained Potts models, all
evaluated by adabmDCA 1.0.0's own code (its sampler, frequencies and Pearson), so two
trainers' models are compared by one yardstick.

The Pearson that a trainer logs is measured on its persistent training chains, which run only
10 sweeps per update: early in training they are not in equilibrium with the model, and a
slower-mixing sampler can show a higher chain Pearson than its model deserves. Here each model
gets fresh chains from its independent-site profile, SWEEPS sweeps of the chosen sampler, and
the Pearson of the final samples against the data (80% identity reweighting, pseudocount
1/M_eff, as in training); the Pearson after SWEEPS/2 sweeps is printed too, as a check that
the chains have settled.

  python potts_equilibrium_pearson.py DATA.fasta SAMPLER SWEEPS SEED MODEL...
  MODEL: an adabmDCA params.dat, or one of our Potts model files (safetensors, J and h)
Run with the adabmDCA virtual environment (bench/potts_vs_adabmdca.sh does).
"""
import json
import struct
import sys

import numpy as np
import torch
from adabmDCA.dataset import DatasetDCA
from adabmDCA.io import load_params
from adabmDCA.sampling import get_sampler
from adabmDCA.stats import get_correlation_two_points, get_freq_single_point, get_freq_two_points
from adabmDCA.utils import init_chains


def read_safetensors(path):
    """Our model file: J [L, q, L, q] and h [L, q], float32 (safetensors layout)."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name in ("J", "h"):
        t = header[name]
        assert t["dtype"] == "F32", t
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype="<f4").reshape(t["shape"])
    return {
        "bias": torch.tensor(out["h"].copy()),
        "coupling_matrix": torch.tensor(out["J"].copy()),
    }


def main():
    data_path, sampler_name, sweeps, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(seed)
    dataset = DatasetDCA.from_alignment(data_path, clustering_th=0.8)
    pseudocount = 1.0 / dataset.weights.sum().item()
    fi, fij = dataset.get_frequencies(pseudocount=pseudocount)
    sampler = get_sampler(sampler_name)
    for path in sys.argv[5:]:
        if path.endswith(".dat"):
            params = load_params(path, tokens="protein", device=torch.device("cpu"))
        else:
            params = read_safetensors(path)
        L, q = params["bias"].shape
        profile = torch.softmax(params["bias"], dim=-1)
        chains = init_chains(1000, L, q, device=torch.device("cpu"), fi=profile)
        pearsons = []
        for half in range(2):
            chains = sampler(chains=chains, params=params, nsweeps=sweeps // 2)
            pi = get_freq_single_point(data=chains)
            pij = get_freq_two_points(data=chains)
            pearsons.append(get_correlation_two_points(fij=fij, pij=pij, fi=fi, pi=pi)[0])
        print(
            f"EQUILIBRIUM model={path} sampler={sampler_name} sweeps={sweeps} "
            f"pearson_half={pearsons[0]:.4f} pearson={pearsons[1]:.4f}"
        )


if __name__ == "__main__":
    main()
