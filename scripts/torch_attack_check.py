#!/usr/bin/env python3
"""torch_attack_check.py -- an independent PyTorch check of `concord attack` (issue 5 item 9).

Reads a Concord checkpoint (SQLite: meta(key, value) and tensor(name, shape, data) with little-endian
float32 blobs in PyTorch layouts; harness/checkpoint.h, docs/checkpoint.md) for the mlp and lenet5
architectures, rebuilds the network in torch (normalisation first: (x - norm.mean) / norm.std), and
computes on the Fashion-MNIST test set (IDX gz files) the clean accuracy and FGSM
x' = clamp(x + eps * sign(grad_x CE), 0, 1) with the exact gradient, in inference mode.
Prints one line: clean, adversarial and robust (clean-correct AND adversarial-correct) accuracy in %.
Shares no code with Concord.

usage: torch_attack_check.py CKPT [--eps 8/255] [--data-dir /usr/share/datasets/fashion-mnist] [--limit N]
"""
import argparse
import gzip
import sqlite3
import sys
from fractions import Fraction

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_eps(text):
    v = float(Fraction(text)) if "/" in text else float(text)
    if not 0 <= v <= 1:
        sys.exit(f"--eps {text}: outside [0,1]")
    return v


def load_ckpt(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    meta = dict(db.execute("SELECT key, value FROM meta"))
    tensors = {}
    for name, shape, blob in db.execute("SELECT name, shape, data FROM tensor"):
        dims = [int(s) for s in shape.split(",")] if shape else []
        tensors[name] = torch.from_numpy(np.frombuffer(blob, dtype="<f4").copy().reshape(dims))
    db.close()
    return meta, tensors


class Net(nn.Module):
    """mlp or lenet5 exactly as harness/models.c builds them (softmax head)."""

    def __init__(self, meta, t):
        super().__init__()
        self.arch = meta["arch"]
        if meta.get("head", "softmax") != "softmax":
            sys.exit("only softmax classifiers are supported")
        c = int(meta["in_c"])
        self.mean = t["norm.mean"].reshape(1, c, 1, 1)
        self.std = t["norm.std"].reshape(1, c, 1, 1)
        self.t = t
        if self.arch == "mlp":
            self.fcs = sorted((k[:-len(".weight")] for k in t if k.startswith("fc") and k.endswith(".weight")),
                              key=lambda s: int(s[2:]))
        elif self.arch != "lenet5":
            sys.exit(f"arch {self.arch}: this check supports mlp and lenet5")

    def forward(self, x):
        t = self.t
        x = (x - self.mean) / self.std
        if self.arch == "lenet5":
            x = F.max_pool2d(F.relu(F.conv2d(x, t["conv1.weight"], t["conv1.bias"], padding=2)), 2, 2)
            x = F.max_pool2d(F.relu(F.conv2d(x, t["conv2.weight"], t["conv2.bias"])), 2, 2)
            x = x.flatten(1)
            x = F.relu(F.linear(x, t["fc1.weight"], t["fc1.bias"]))
            x = F.relu(F.linear(x, t["fc2.weight"], t["fc2.bias"]))
            return F.linear(x, t["fc3.weight"], t["fc3.bias"])
        x = x.flatten(1)
        for i, name in enumerate(self.fcs):
            x = F.linear(x, t[name + ".weight"], t[name + ".bias"])
            if i + 1 < len(self.fcs):
                x = F.relu(x)
        return x


def read_idx(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    ndim = b[3]
    dims = [int.from_bytes(b[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--eps", default="8/255")
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--batch", type=int, default=500)
    a = ap.parse_args()
    eps = parse_eps(a.eps)
    torch.set_num_threads(1)
    meta, tensors = load_ckpt(a.ckpt)
    net = Net(meta, tensors).eval()
    x = read_idx(f"{a.data_dir}/t10k-images-idx3-ubyte.gz").astype(np.float32) / np.float32(255)
    y = read_idx(f"{a.data_dir}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    if a.limit > 0:
        x, y = x[: a.limit], y[: a.limit]
    x = torch.from_numpy(x).reshape(len(y), int(meta["in_c"]), int(meta["in_h"]), int(meta["in_w"]))
    y = torch.from_numpy(y)
    clean = adv = robust = 0
    for i in range(0, len(y), a.batch):
        xb, yb = x[i: i + a.batch].clone().requires_grad_(True), y[i: i + a.batch]
        logits = net(xb)
        loss = F.cross_entropy(logits, yb, reduction="sum")
        (g,) = torch.autograd.grad(loss, xb)
        with torch.no_grad():
            xa = torch.clamp(xb + eps * torch.sign(g), 0, 1)
            ok_c = logits.argmax(1) == yb
            ok_a = net(xa).argmax(1) == yb
        clean += int(ok_c.sum())
        adv += int(ok_a.sum())
        robust += int((ok_c & ok_a).sum())
    n = len(y)
    print(f"torch: n {n} eps {a.eps} clean {100 * clean / n:.2f}% fgsm-adv {100 * adv / n:.2f}% robust {100 * robust / n:.2f}%")


if __name__ == "__main__":
    main()
