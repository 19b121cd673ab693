"""Forward AIS for a Bernoulli RBM in plain NumPy: the peer that bench/ais_vs_numpy.sh times
against the engine's cpu AIS on the same model file, data and schedule.

Same algorithm as the engine (engine/src/estimate/chains/rbm.rs, estimate/ais.rs): base model
= the data's base-rate visible biases a (logit of (count + 1) / (rows + 2)) with W = 0 and
c = 0, so ln Z_base = sum softplus(a) + hidden ln 2; path p_beta(v, h) with visible logits
(1 - beta) a + beta (b + W h) and hidden logits beta (c + W^T v); per step the log-weight gains
ln f_beta'(v) - ln f_beta(v), then one block-Gibbs step at beta'; the schedule is the engine's
default (10% of the steps over [0, 0.5], 40% over [0.5, 0.9], 50% over [0.9, 1]). A fair loop,
not a naive one: one v W per step serves both the weight and the hidden draw; float32
products through NumPy's BLAS, float64 log-weights.

Usage: python ais_numpy.py MODEL.safetensors TRAIN.npy CHAINS BETAS SEED
Prints one JSON line: log_z, stderr, ess, seconds (the annealing loop only).
"""

import json
import struct
import sys
import time

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{name}: {info['dtype']}"
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(body[start:end], dtype=np.float32).reshape(info["shape"])
    return out


def default_schedule(steps):
    if steps < 10:
        return np.linspace(0.0, 1.0, steps + 1)
    n1 = max(steps // 10, 1)
    n2 = max(steps * 4 // 10, 1)
    n3 = steps - n1 - n2
    betas = [0.0]
    for n, lo, hi in [(n1, 0.0, 0.5), (n2, 0.5, 0.9), (n3, 0.9, 1.0)]:
        betas += [lo + (hi - lo) * k / n for k in range(1, n + 1)]
    betas[-1] = 1.0
    return np.array(betas)


def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def main():
    model_path, data_path, chains, steps, seed = sys.argv[1:6]
    chains, steps, seed = int(chains), int(steps), int(seed)
    m = read_safetensors(model_path)
    w, b, c = m["W"], m["b"], m["c"]
    data = np.load(data_path)
    rows, nv = data.shape
    nh = w.shape[1]
    p = (data.sum(axis=0, dtype=np.float64) + 1.0) / (rows + 2.0)
    a = np.log(p / (1.0 - p)).astype(np.float32)
    log_z_base = softplus(a.astype(np.float64)).sum() + nh * np.log(2.0)
    rng = np.random.default_rng(seed)
    betas = default_schedule(steps)

    started = time.perf_counter()
    v = (rng.random((chains, nv), dtype=np.float32) < sigmoid(a)).astype(np.float32)
    log_w = np.zeros(chains)
    b_minus_a = (b - a).astype(np.float32)
    for k in range(1, len(betas)):
        lo, hi = np.float32(betas[k - 1]), np.float32(betas[k])
        x = v @ w + c
        log_w += (hi - lo) * (v @ b_minus_a) + (softplus(hi * x) - softplus(lo * x)).sum(
            axis=1, dtype=np.float64
        )
        h = (rng.random((chains, nh), dtype=np.float32) < sigmoid(hi * x)).astype(np.float32)
        logits = (1 - hi) * a + hi * (b + h @ w.T)
        v = (rng.random((chains, nv), dtype=np.float32) < sigmoid(logits)).astype(np.float32)
    seconds = time.perf_counter() - started

    top = log_w.max()
    weights = np.exp(log_w - top)
    mean = weights.mean()
    log_z = log_z_base + top + np.log(mean)
    stderr = weights.std(ddof=1) / np.sqrt(chains) / mean
    ess = weights.sum() ** 2 / (weights**2).sum()
    print(json.dumps({"numpy": {"chains": chains, "betas": steps, "log_z": round(log_z, 4),
                                "stderr": round(stderr, 4), "ess": round(ess, 1),
                                "seconds": round(seconds, 3)}}))


if __name__ == "__main__":
    main()
