#!/usr/bin/python3
"""ckpt_to_torch.py -- load a Concord checkpoint of `mlp` or `lenet5` into an equivalent torch nn.Module.

    /usr/bin/python3 scripts/ckpt_to_torch.py model.ckpt      # prints the model and its parameter count
    >>> import ckpt_to_torch; net = ckpt_to_torch.load("model.ckpt"); logits = net(x)  # x (N,C,H,W) in [0,1]

Needs only sqlite3, numpy and torch; the format is docs/checkpoint.md. The module's state_dict keys are
the checkpoint's tensor names, so load_state_dict(strict=True) proves every tensor was placed.
"""
import sqlite3
import sys

import numpy as np
import torch
from torch import nn


class Norm(nn.Module):  # Concord's first layer: (x - mean) / std per channel, x in [0,1]
    def __init__(self, c):
        super().__init__()
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("std", torch.ones(c))

    def forward(self, x):
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)


class Concord(nn.Module):
    def __init__(self, meta):
        super().__init__()
        self.arch, c, h, w, k = meta["arch"], int(meta["in_c"]), int(meta["in_h"]), int(meta["in_w"]), int(meta["classes"])
        self.norm, self.hash = Norm(c), meta.get("head") == "hash"
        if self.arch == "lenet5":
            self.conv1, self.conv2 = nn.Conv2d(c, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
            widths = [16 * ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2), 120, 84, k]
        elif self.arch == "mlp":
            widths = [c * h * w] + [int(v) for v in meta["hidden"].split(",")] + [k]
        else:
            raise ValueError(f"ckpt_to_torch handles mlp and lenet5, not {self.arch}")
        self.fcs = [f"fc{i + 1}" for i in range(len(widths) - 1)]
        for i, name in enumerate(self.fcs):
            setattr(self, name, nn.Linear(widths[i], widths[i + 1]))

    def forward(self, x):
        x = self.norm(x)
        if self.arch == "lenet5":
            x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2, 2)
            x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2, 2)
        x = x.flatten(1)
        for i, name in enumerate(self.fcs):
            x = getattr(self, name)(x)
            x = torch.relu(x) if i + 1 < len(self.fcs) else (torch.tanh(x) if self.hash else x)
        return x


def load(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta.get("format") == "concord-checkpoint-1", f"{path}: not a concord-checkpoint-1 file"
    state = {name: torch.from_numpy(np.frombuffer(blob, "<f4").reshape([int(d) for d in shape.split(",")]).copy())
             for name, shape, blob in db.execute("SELECT name, shape, data FROM tensor")
             if not name.startswith(("optim.", "rule."))}  # optimiser and learning-rule state: training only
    db.close()
    net = Concord(meta)
    net.load_state_dict(state, strict=True)
    return net.eval()


if __name__ == "__main__":
    net = load(sys.argv[1])
    print(net, f"\n{sum(p.numel() for p in net.parameters())} parameters")
