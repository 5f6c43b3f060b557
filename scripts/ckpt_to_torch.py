#!/usr/bin/python3
"""ckpt_to_torch.py -- a Concord checkpoint as an equivalent torch nn.Module: every architecture, every rule.

    /usr/bin/python3 scripts/ckpt_to_torch.py model.ckpt                  # prints the model and its size
    /usr/bin/python3 scripts/ckpt_to_torch.py model.ckpt --out model.pt   # a state_dict, + model.concord.json
    /usr/bin/python3 scripts/ckpt_to_torch.py a.ckpt b.ckpt --out-dir D   # D/a.pt, D/a.concord.json, ...
    >>> import ckpt_to_torch; net = ckpt_to_torch.load("model.ckpt"); logits = net(x)  # x (N,C,H,W) in [0,1]
    >>> net.feedback(True)  # from now on autograd sends the error down through the rule's feedback B

Needs sqlite3, numpy and torch; the format is docs/checkpoint.md, the graphs come from
scripts/concord_models.py (models.c in Python). The module's state_dict keys are the checkpoint's tensor
names (plus BatchNorm's num_batches_tracked), so load_state_dict(strict=True) proves every tensor found
its place. The rule state becomes a buffer beside the layer's weight, as BioTorch names it:
  fa    weight_backward = R (B = R)              frsf  weight_backward = |M| (B = |M| * sign(W))
  dfa   weight_dfa = D^T: (K, D_in) for a linear layer, (K, C, H, W) over a conv layer's input map
  usf   nothing (B = s * sign(W), s from rule_opts)   brsf  nothing (|M_t| * sign(W), redrawn each forward)
and `concord import` reads them back: Concord -> PyTorch -> Concord is bitwise (tests/test_import.c).
--out also writes FILE.concord.json (the checkpoint's meta rows, which concord import carries over) and,
when the optimiser state is not all zero, FILE.optim.pt (optim.m, optim.v).
--probe FILE writes what the torch module computes on a fixed batch (tests/test_import.c compares it
with Concord's own forward and backward).
"""
import argparse
import collections
import json
import math
import os
import sqlite3
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import concord_models as cm  # noqa: E402


class Norm(nn.Module):  # Concord's first layer: (x - mean) / std per channel, x in [0,1]
    def __init__(self, c):
        super().__init__()
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("std", torch.ones(c))

    def forward(self, x):
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)


class FeedbackFn(torch.autograd.Function):
    """y = layer(x; W, b); backward: dx through B (a weight-shaped matrix), dW and db exact."""

    @staticmethod
    def forward(ctx, x, w, b, fb, layer):
        ctx.save_for_backward(x, w, fb)
        ctx.layer = layer
        return layer.native(x, w, b)

    @staticmethod
    def backward(ctx, gy):
        x, w, fb = ctx.saved_tensors
        L, has_b = ctx.layer, ctx.needs_input_grad[2]
        if isinstance(L, nn.Linear):
            return gy.mm(fb), gy.t().mm(x), gy.sum(0) if has_b else None, None, None
        gx, gw, gb = torch.ops.aten.convolution_backward(gy, x, fb, [fb.shape[0]], list(L.stride), list(L.padding),
                                                         [1, 1], False, [0, 0], 1, [True, True, has_b])
        return gx, gw, gb, None, None


class DirectFn(torch.autograd.Function):
    """DFA: y = layer(x); backward: dx = e D^T with e the gradient at the model's output (Concord's
    direct rule), dW and db exact."""

    @staticmethod
    def forward(ctx, x, w, b, d, layer):
        ctx.save_for_backward(x, w, d)
        ctx.layer = layer
        return layer.native(x, w, b)

    @staticmethod
    def backward(ctx, gy):
        x, w, d = ctx.saved_tensors
        L = ctx.layer
        e = L.holder["e"]
        gx = e.mm(d.reshape(d.shape[0], -1)).reshape(x.shape)
        if isinstance(L, nn.Linear):
            return gx, gy.t().mm(x), gy.sum(0) if ctx.needs_input_grad[2] else None, None, None
        gw = torch.nn.grad.conv2d_weight(x, w.shape, gy, L.stride, L.padding)
        return gx, gw, gy.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None, None, None


class FeedbackLayer:
    """Mixin for nn.Linear / nn.Conv2d: the layer's rule and how it builds B (rules/*.c)."""

    def setup(self, rule, opts, node, holder, classes):
        self.rule, self.opts, self.node, self.holder, self.use_fb = rule, opts, node, holder, False
        shape = tuple(self.weight.shape)
        if rule in ("fa", "frsf"):
            self.register_buffer("weight_backward", torch.zeros(shape))
        elif rule == "dfa":
            dshape = (classes, node.in_dim()) if node.kind == "linear" else (classes, node.ic, node.ih, node.iw)
            self.register_buffer("weight_dfa", torch.zeros(dshape))

    def native(self, x, w, b):
        if isinstance(self, nn.Linear):
            return F.linear(x, w, b)
        return F.conv2d(x, w, b, self.stride, self.padding)

    def feedback_matrix(self):
        w = self.weight.detach()
        n = self.node
        fi, fo = n.fan_in(), n.fan_out()
        if self.rule == "fa":
            return self.weight_backward
        if self.rule == "frsf":
            return self.weight_backward.abs() * torch.sign(w)
        if self.rule == "usf":
            k = self.opts["usf-scale"]
            s = {"xavier": lambda: math.sqrt(2.0 / (fi + fo)), "he-fanout": lambda: math.sqrt(2.0 / fo),
                 "none": lambda: 1.0, "wstd": lambda: w.double().std().item(),
                 "meanabs": lambda: w.double().abs().mean().item()}[k]()
            return torch.sign(w) * float(np.float32(s))
        if self.rule == "brsf":
            if self.opts["magnitude"] == "uniform":
                a = math.sqrt(6.0 / (fi + fo))
                m = torch.empty_like(w).uniform_(-a, a)
            else:
                m = torch.randn_like(w) * math.sqrt(2.0 / (fi + fo))
            return m.abs() * torch.sign(w)
        return w

    def forward(self, x):
        if not (self.use_fb and torch.is_grad_enabled()) or self.rule == "bp":
            return self.native(x, self.weight, self.bias)
        if self.rule == "dfa":
            return DirectFn.apply(x, self.weight, self.bias, self.weight_dfa, self)
        return FeedbackFn.apply(x, self.weight, self.bias, self.feedback_matrix(), self)


class FBLinear(FeedbackLayer, nn.Linear):
    pass


class FBConv2d(FeedbackLayer, nn.Conv2d):
    pass


def _put(root, dotted, module):
    """Registers module under a dotted name, creating plain containers on the way ("layer1.0.conv1")."""
    parts = dotted.split(".")
    for p in parts[:-1]:
        if not hasattr(root, p) or getattr(root, p) is None:
            root.add_module(p, nn.Module())
        root = getattr(root, p)
    root.add_module(parts[-1], module)


class Concord(nn.Module):
    """The graph of concord_models.build(spec), run node by node as harness/model.c does."""

    def __init__(self, meta):
        super().__init__()
        self.spec = cm.Spec(meta["arch"], meta["in_c"], meta["in_h"], meta["in_w"], meta["classes"],
                            float(meta.get("width", 1)), meta.get("hidden", "256,256"), float(meta.get("dropout", 0.5)),
                            meta.get("head", "softmax"))
        self.rule = meta.get("rule", "bp")
        self.opts = cm.rule_opts_parse(meta.get("rule_opts"))
        self.graph = cm.build(self.spec)
        rules = cm.layer_rules(self.graph, self.rule, self.opts["last-layer-bp"])
        self._e = {}
        self.mods = {}
        for n in self.graph.nodes:
            if n.kind == "norm":
                mod = Norm(n.c)
            elif n.kind == "linear":
                mod = FBLinear(n.in_dim(), n.c)
                mod.setup(rules[n.name], self.opts, n, self._e, self.spec.classes)
            elif n.kind == "conv":
                mod = FBConv2d(n.ic, n.c, n.k, n.stride, n.pad, bias=bool(n.bias))
                mod.setup(rules[n.name], self.opts, n, self._e, self.spec.classes)
            elif n.kind == "bn":
                mod = nn.BatchNorm2d(n.c)
            else:
                continue
            _put(self, n.name, mod)
            self.mods[n.name] = mod

    def feedback(self, on=True):
        for m in self.mods.values():
            if isinstance(m, FeedbackLayer):
                m.use_fb = on
        return self

    def forward(self, x):
        acts = []
        for n in self.graph.nodes:
            h = x if n.inp < 0 else acts[n.inp]
            if n.kind in ("norm", "conv", "bn"):
                y = self.mods[n.name](h)
            elif n.kind == "linear":
                y = self.mods[n.name](h.flatten(1))
            elif n.kind == "relu":
                y = F.relu(h)
            elif n.kind == "tanh":
                y = torch.tanh(h)
            elif n.kind == "maxpool":
                y = F.max_pool2d(h, n.k, n.stride)
            elif n.kind == "gap":
                y = h.mean((2, 3), keepdim=True)
            elif n.kind == "flatten":
                y = h.flatten(1)
            elif n.kind == "dropout":
                y = F.dropout(h, n.p, self.training)
            elif n.kind == "add":
                y = h + acts[n.inp2]
            else:
                raise ValueError(n.kind)
            acts.append(y)
        out = acts[-1].flatten(1)
        if out.requires_grad and any(isinstance(m, FeedbackLayer) and m.use_fb and m.rule == "dfa" for m in self.mods.values()):
            out.register_hook(lambda g: self._e.__setitem__("e", g))
        return out


def read_ckpt(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    meta = collections.OrderedDict(db.execute("SELECT key, value FROM meta ORDER BY rowid"))
    assert meta.get("format") == "concord-checkpoint-1", f"{path}: not a concord-checkpoint-1 file"
    tensors = collections.OrderedDict(
        (name, np.frombuffer(blob, "<f4").reshape([int(d) for d in shape.split(",")]).copy())
        for name, shape, blob in db.execute("SELECT name, shape, data FROM tensor ORDER BY rowid"))
    db.close()
    return meta, tensors


def load(path):
    """The checkpoint as a Concord module in inference mode (net.feedback(True) for the rule's B)."""
    meta, tensors = read_ckpt(path)
    net = Concord(meta)
    state = collections.OrderedDict()
    for name, arr in tensors.items():
        if name.startswith("optim."):
            continue
        if name.startswith("rule."):
            layer = name[len("rule."):-len(".state")]
            mod, n = net.mods[layer], net.mods[layer].node
            if mod.rule == "dfa":  # D (D_in, K) -> weight_dfa (K, D_in) or (K, C, H, W)
                d = arr.reshape(n.in_dim(), -1).T
                state[f"{layer}.weight_dfa"] = torch.from_numpy(np.ascontiguousarray(d).reshape(mod.weight_dfa.shape))
            else:
                state[f"{layer}.weight_backward"] = torch.from_numpy(arr.reshape(mod.weight.shape))
            continue
        state[name] = torch.from_numpy(arr)
    for name, mod in net.mods.items():
        if isinstance(mod, nn.BatchNorm2d):
            state[f"{name}.num_batches_tracked"] = torch.tensor(0)
    net.load_state_dict(state, strict=True)
    return net.eval()


def export(path, out):
    """out: the module's state_dict (usual torch file); beside it <stem>.concord.json with the meta rows and,
    when the optimiser state is not zero, <stem>.optim.pt."""
    meta, tensors = read_ckpt(path)
    net = load(path)
    torch.save(net.state_dict(), out)
    stem = out[:-3] if out.endswith(".pt") else out
    side = collections.OrderedDict(meta=meta)
    if any(np.any(tensors[k] != 0) for k in ("optim.m", "optim.v") if k in tensors):
        optim = stem + ".optim.pt"
        torch.save(collections.OrderedDict((k, torch.from_numpy(tensors[k])) for k in ("optim.m", "optim.v")), optim)
        side["optim"] = os.path.basename(optim)
    with open(stem + ".concord.json", "w") as f:
        json.dump(side, f, indent=1)
        f.write("\n")
    return net


def probe_input(n, c, h, w):
    """The fixed probe batch: x[i] = ((37 i + 11) mod 256) / 256 over the flat (n, c, h, w) array (exact in
    float32); tests/test_import.c builds the same."""
    i = np.arange(n * c * h * w, dtype=np.int64)
    return (((37 * i + 11) % 256) / 256.0).reshape(n, c, h, w)


def probe_dout(n, k):
    """The fixed output gradient: ((7 n + 3 k) mod 5 - 2) / 2."""
    nn_, kk = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    return (((7 * nn_ + 3 * kk) % 5) - 2) / 2.0


def write_records(path, records):
    """CCIMP001: uint32 count, then per record uint32 name_len, name, uint32 ndim, uint32 dims, float32 data."""
    with open(path, "wb") as f:
        f.write(b"CCIMP001" + struct.pack("<I", len(records)))
        for name, arr in records:
            a = np.ascontiguousarray(arr, "<f4")
            f.write(struct.pack("<I", len(name)) + name.encode() + struct.pack("<I", a.ndim))
            f.write(struct.pack(f"<{a.ndim}I", *a.shape) + a.tobytes())


def probe(net, path, n=2):
    """Logits, the true input gradient and (bp, fa, frsf, usf, dfa) the feedback one, of the float64 module."""
    s = net.spec
    x = torch.from_numpy(probe_input(n, s.in_c, s.in_h, s.in_w))
    dout = torch.from_numpy(probe_dout(n, s.classes))
    net = net.double()
    recs = []
    for fb in (False, True):
        if fb and net.rule == "brsf":
            break
        net.feedback(fb)
        xr = x.clone().requires_grad_(True)
        out = net(xr)
        (gx,) = torch.autograd.grad(out, xr, dout)
        if not fb:
            recs.append(("logits", out.detach().numpy()))
        recs.append(("dx_feedback" if fb else "dx_true", gx.numpy()))
    net.feedback(False)
    write_records(path, recs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("ckpt", nargs="+")
    p.add_argument("--out", help="write the state_dict here (one checkpoint)")
    p.add_argument("--out-dir", help="write DIR/<name>.pt for every checkpoint")
    p.add_argument("--probe", action="store_true", help="also write <out stem>.probe (tests)")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.out and len(a.ckpt) != 1:
        p.error("--out takes one checkpoint; use --out-dir for several")
    for path in a.ckpt:
        if a.out or a.out_dir:
            out = a.out or os.path.join(a.out_dir, os.path.splitext(os.path.basename(path))[0] + ".pt")
            net = export(path, out)
            if a.probe:
                probe(net, out[:-3] + ".probe")
            print(f"{path} -> {out}")
        else:
            net = load(path)
            print(net, f"\n{sum(p.numel() for p in net.parameters())} parameters")


if __name__ == "__main__":
    main()
