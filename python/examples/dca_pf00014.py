"""Boltzmann-machine DCA on the bundled PF00014 alignment (Kunitz/BPTI): train a Potts
model, then read its contact map and a mutational scan from the server.

    python python/examples/dca_pf00014.py [--server URL] [--epochs N]

The contact score is the usual one (`client.contacts`, computed on the server as
`ebm models contacts` does): each coupling block J_ij moved to the zero-sum gauge, its
Frobenius norm, then the average-product correction (APC). Prints the top pairs, the
single-mutant scan of the first sequence (`client.scan`: the energy change of every mutant,
the deep-mutational-scan prediction) and the energies of a few sequences (`client.score`);
saves pf00014_contacts.npy (and a PNG when matplotlib is installed). A real DCA run trains for hundreds of epochs; the default
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
model = job.wait().model
L = model.dims["sites"]

# %% contact map: zero-sum gauge, Frobenius norm, APC (on the server)
contacts = client.contacts(model, top=10, min_separation=5, matrix=True)
apc = contacts.matrix                                  # [L, L] APC scores
np.save("pf00014_contacts.npy", apc)
print("top 10 pairs (|i - j| > 4), sites counted from 1:")
for p in contacts.pairs:
    print(f"  {p['i'] + 1:3d} {p['j'] + 1:3d}  {p['score']:.3f}")
pairs = [(apc[i, j], i, j) for i in range(L) for j in range(i + 5, L)]
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

# %% mutational scan of the first sequence, and per-sequence energies
# The server encodes FASTA as gap = 0, then the 20 amino acids in one-letter order (1..20);
# lower-case letters (insertions) are not alignment columns. (A letter outside the alphabet,
# e.g. X, is read as a gap by default; map it to "-" here to match.)
ALPHABET = "-ACDEFGHIKLMNPQRSTVWY"
text = (REPO / "data" / "msa" / "PF00014.fasta").read_text()
first = "".join(text.split(">")[1].splitlines()[1:])
first = [c if c in ALPHABET else "-" for c in first if not c.islower() and c != "."]
reference = [ALPHABET.index(c) for c in first]
scan = client.scan(model, reference)                     # [L, q]: E(mutant) - E(reference)
best = np.unravel_index(np.argmin(scan), scan.shape)
print(f"scan of the first sequence: most favourable single mutant {first[best[0]]}{best[0] + 1}"
      f"{ALPHABET[best[1]]} (dE = {scan[best]:.2f}); mean dE {scan.mean():.2f}")
scores = client.score(model, alignment, log_likelihood=False)
print(f"energies of the {len(scores['energy'])} aligned sequences: mean {scores['energy'].mean():.2f},"
      f" range {scores['energy'].min():.2f} .. {scores['energy'].max():.2f}")

