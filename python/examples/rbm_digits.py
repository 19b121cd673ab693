"""RBM on the bundled 8x8 digits: upload, train while watching, then draw samples.

    python python/examples/rbm_digits.py [--server URL] [--epochs N]

Prints each epoch's metrics and a few samples as text pictures; with matplotlib installed it
also saves rbm_digits_samples.png.
"""
import argparse
from pathlib import Path

import numpy as np

from ebm_client import Client

REPO = Path(__file__).resolve().parents[2]

parser = argparse.ArgumentParser()
parser.add_argument("--server", default=None, help="default $EBM_SERVER or http://127.0.0.1:50051")
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

client = Client(args.server)
digits = np.load(REPO / "data" / "digits" / "digits_binarized.npy")  # (1797, 64) uint8
dataset = client.upload(digits, name="digits")
print(f"uploaded {dataset.id}: {dataset.rows} x {dataset.cols} {dataset.value_kind}")

# %% train: the spec is docs/job-spec.md's, as a dict (TOML text works too)
spec = {
    "kind": "train",
    "name": "digits-rbm",
    "seed": 7,
    "model": {"type": "bernoulli_rbm", "hidden": 64},
    "train": {"method": "pcd", "k": 1, "chains": 100, "batch_size": 20,
              "learning_rate": 0.05, "momentum": 0.5, "validation_fraction": 0.1},
}
job = client.submit(spec, dataset=dataset, train__epochs=args.epochs)
for event in job.watch():
    if event.kind == "metrics":
        shown = {k: round(v, 3) for k, v in event.metrics.items()
                 if k in ("pseudo_log_likelihood", "val_pseudo_log_likelihood", "reconstruction_error")}
        print(f"epoch {event.epoch}/{event.epochs}: {shown}")
model = job.wait().model
arrays = model.arrays()
print(f"{model.id}: " + ", ".join(f"{k} {a.shape} {a.dtype}" for k, a in arrays.items()))

# %% samples
samples = client.sample(model, 8, burn_in=1000, seed=1)
rows = [" ".join("".join("#" if p else "." for p in s.reshape(8, 8)[r]) for s in samples) for r in range(8)]
print("samples:\n" + "\n".join(rows))
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(samples), figsize=(len(samples), 1.2))
    for ax, s in zip(axes, samples):
        ax.imshow(s.reshape(8, 8), cmap="gray_r")
        ax.axis("off")
    fig.savefig("rbm_digits_samples.png", dpi=100)
    print("saved rbm_digits_samples.png")
except ImportError:
    pass
