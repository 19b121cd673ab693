"""Boltzmann-machine DCA on the bundled PF00014 alignment (Kunitz/BPTI): train a Potts
model, download its couplings J [L, q, L, q], and compute the contact map in NumPy.

    python python/examples/dca_pf00014.py [--server URL] [--epochs N]

The contact score is the usual one: each coupling block J_ij moved to the zero-sum gauge,
its Frobenius norm without the gap state, then the average-product correction (APC). The
server has no contact-map call yet (`ebm models contacts` is planned), so this is computed
here from the downloaded model. Prints the top pairs and saves pf00014_contacts.npy (and a
PNG when matplotlib is installed). A real DCA run trains for hundreds of epochs; the default
here is short so that the example runs in a minute or two.
"""
import argparse
from pathlib import Path

import numpy as np

from ebm_client import Client

REPO = Path(__file__).resolve().parents[2]

parser = argparse.ArgumentParser()
parser.add_argument("--server", default=None)
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

client = Client(args.server)
alignment = client.upload(REPO / "data" / "msa" / "PF00014.fasta")
print(f"uploaded {alignment.id}: {alignment.rows} sequences x {alignment.cols} sites, q = {alignment.q}")

# %% train
job = client.submit(
    'kind = "train"\nname = "pf00014"\nseed = 1\n[model]\ntype = "potts"\n'
    '[train]\nmethod = "pcd"\nchains = 500\nk = 10\nlearning_rate = 0.05\n',
    dataset=alignment, train__epochs=args.epochs,
)
for event in job.watch():
    if event.kind == "metrics" and (event.epoch % 5 == 0 or event.epoch == event.epochs):
        pearson = event.metrics.get("pearson", float("nan"))
        print(f"epoch {event.epoch}/{event.epochs}: pearson of connected correlations {pearson:.3f}")
J = job.wait().model.arrays()["J"].astype(np.float64)  # [L, q, L, q]
L, q = J.shape[0], J.shape[1]

# %% contact map: zero-sum gauge, Frobenius norm without the gap state (index 0), APC
J = J - J.mean(axis=1, keepdims=True) - J.mean(axis=3, keepdims=True) + J.mean(axis=(1, 3), keepdims=True)
frobenius = np.sqrt((J[:, 1:, :, 1:] ** 2).sum(axis=(1, 3)))
np.fill_diagonal(frobenius, 0.0)
mean_row = frobenius.sum(axis=1) / (L - 1)
apc = frobenius - np.outer(mean_row, mean_row) / (frobenius.sum() / (L * (L - 1)))
np.fill_diagonal(apc, 0.0)
np.save("pf00014_contacts.npy", apc)

pairs = [(apc[i, j], i, j) for i in range(L) for j in range(i + 5, L)]
print("top 10 pairs (|i - j| > 4), sites counted from 1:")
for score, i, j in sorted(pairs, reverse=True)[:10]:
    print(f"  {i + 1:3d} {j + 1:3d}  {score:.3f}")
top = sorted(pairs, reverse=True)[: 2 * L]
grid = [["."] * L for _ in range(L)]
for _, i, j in top:
    grid[i][j] = grid[j][i] = "#"
print(f"contact map (top {2 * L} pairs):")
print("\n".join("".join(row) for row in grid))
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imshow(apc, cmap="Greys")
    plt.savefig("pf00014_contacts.png", dpi=100)
    print("saved pf00014_contacts.png")
except ImportError:
    pass
