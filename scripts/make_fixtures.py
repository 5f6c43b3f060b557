#!/usr/bin/python3
"""make_fixtures.py -- PyTorch reference fixtures for tests/test_fixtures.c.

    /usr/bin/python3 scripts/make_fixtures.py tests/fixtures      (or: make fixtures)

For `mlp` and `lenet5`, with fixed seeded weights (NOT Concord's initialiser) and a fixed batch of
N = 4 inputs in [0,1] (1x28x28) with given labels, this computes in float64 with an implementation
that shares no code with Concord (torch.nn.functional conv2d / max_pool2d / linear / relu /
cross_entropy with mean reduction, and autograd):
    logits, the mean loss, dL/dlogits, the gradient of every parameter, and dL/dx (the input).
Every value that goes into the checkpoint (weights, norm mean/std, inputs) is first rounded to float32,
so the float64 reference sees exactly the numbers the float32 engine sees.

It writes, per model:
  <model>.ckpt  a real Concord checkpoint (docs/checkpoint.md): every meta key ckpt_load reads and every
                tensor the model has, optim.m/optim.v included (zeros).
  <model>.bin   inputs, labels and expected outputs, little-endian, as named records:
                  magic    8 bytes  b"CCFIX001"
                  count    uint32   number of records
                  then per record:
                  name_len uint32, name (name_len bytes of ASCII, no NUL),
                  ndim     uint32, dims ndim x uint32 (ndim 0 = scalar, one value),
                  data     prod(dims) x float64, row-major
                Records: "x" (N,C,H,W), "y" (N) class indices stored as float64, "logits" (N,K),
                "loss" (scalar), "dlogits" (N,K), "dx" (N,C,H,W), and "grad.<tensor>" for every
                parameter tensor (e.g. "grad.conv1.weight", shape as in the checkpoint).

The mlp fixture uses hidden widths 32,16 instead of the default 256,256: the default mlp would make
~5 MB of fixtures (269k parameters, three float32 copies in the checkpoint plus float64 gradients),
and unequal widths catch a transposed weight that the square 256x256 fc2 would hide. The code path
(norm, flatten, linear, relu, linear, relu, linear) is the same.

Inputs are drawn so that no ReLU pre-activation lies within MARGIN of 0 and no positive max-pool
window has its top two values within MARGIN: there, float32 rounding in the engine could flip a
branch the float64 reference takes and the gradients would differ for reasons that are not bugs.
After writing, it reloads each checkpoint with scripts/ckpt_to_torch.py (float32) and checks the
logits against the float64 reference, so the reader documented in docs/checkpoint.md is tested too.
"""
import os
import sqlite3
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

N, C, H, W, K = 4, 1, 28, 28, 10
NORM_MEAN, NORM_STD = 0.2860, 0.3530  # Fashion-MNIST statistics: non-trivial, not 0/1
MARGIN = 1e-5  # >> float32 engine error on O(1) pre-activations (~1e-6 after 400-term sums)
MLP_HIDDEN = (32, 16)
RULE_OPTS = "usf-scale=xavier;magnitude=uniform;brsf-resample=batch;last-layer-bp=0;rule-seed=0"


def f32(t):
    """Round to float32 and back: the float64 reference must use exactly the stored values."""
    return t.to(torch.float32).to(torch.float64)


def param_shapes(arch):
    """Parameter tensors in Concord's order (harness/models.c), with PyTorch layouts."""
    if arch == "mlp":
        widths = [C * H * W, *MLP_HIDDEN, K]
        out = []
        for i in range(len(widths) - 1):
            out += [(f"fc{i + 1}.weight", (widths[i + 1], widths[i])), (f"fc{i + 1}.bias", (widths[i + 1],))]
        return out
    return [("conv1.weight", (6, C, 5, 5)), ("conv1.bias", (6,)), ("conv2.weight", (16, 6, 5, 5)), ("conv2.bias", (16,)),
            ("fc1.weight", (120, 400)), ("fc1.bias", (120,)), ("fc2.weight", (84, 120)), ("fc2.bias", (84,)),
            ("fc3.weight", (K, 84)), ("fc3.bias", (K,))]


def draw(arch, seed):
    """Weights ~ N(0, 1/fan_in), biases ~ U(-0.2, 0.2), x ~ U(0,1), all float32-representable."""
    g = torch.Generator().manual_seed(seed)
    p = {}
    for name, shape in param_shapes(arch):
        if name.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
            p[name] = f32(torch.randn(shape, generator=g, dtype=torch.float64) * (1.0 / fan_in) ** 0.5)
        else:
            p[name] = f32((torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * 0.2)
    x = f32(torch.rand((N, C, H, W), generator=g, dtype=torch.float64))
    y = torch.randint(0, K, (N,), generator=g)
    return p, x, y


def forward(arch, p, x, mean, std, probe):
    """The reference network; probe(kind, tensor) sees every ReLU input and max-pool input."""
    z = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    if arch == "lenet5":
        for conv, pad in (("conv1", 2), ("conv2", 0)):
            z = F.conv2d(z, p[conv + ".weight"], p[conv + ".bias"], padding=pad)
            probe("relu", z)
            z = F.relu(z)
            probe("pool", z)
            z = F.max_pool2d(z, 2, 2)
        fcs = ["fc1", "fc2", "fc3"]
    else:
        fcs = [f"fc{i + 1}" for i in range(len(MLP_HIDDEN) + 1)]
    z = z.flatten(1)
    for i, fc in enumerate(fcs):
        z = F.linear(z, p[fc + ".weight"], p[fc + ".bias"])
        if i + 1 < len(fcs):
            probe("relu", z)
            z = F.relu(z)
    return z


def ambiguous(kind, t):
    """True where float32 rounding could take a different branch than float64."""
    t = t.detach()
    if kind == "relu":
        return bool((t.abs() < MARGIN).any())
    win = t.unfold(2, 2, 2).unfold(3, 2, 2).reshape(*t.shape[:2], t.shape[2] // 2, t.shape[3] // 2, 4)
    top2 = win.topk(2, dim=-1).values
    return bool(((top2[..., 0] > 0) & (top2[..., 0] - top2[..., 1] < MARGIN)).any())


def reference(arch, seed):
    mean = f32(torch.tensor([NORM_MEAN], dtype=torch.float64))
    std = f32(torch.tensor([NORM_STD], dtype=torch.float64))
    for s in range(seed, seed + 1000):
        p, x, y = draw(arch, s)
        bad = []
        with torch.no_grad():
            forward(arch, p, x, mean, std, lambda kind, t: bad.append(ambiguous(kind, t)))
        if not any(bad):
            break
    else:
        raise SystemExit(f"{arch}: no seed without near-ties in 1000 tries")
    for t in p.values():
        t.requires_grad_(True)
    x.requires_grad_(True)
    logits = forward(arch, p, x, mean, std, lambda kind, t: None)
    logits.retain_grad()
    loss = F.cross_entropy(logits, y, reduction="mean")
    loss.backward()
    out = {"x": x.detach(), "y": y.to(torch.float64), "logits": logits.detach(), "loss": loss.detach(),
           "dlogits": logits.grad, "dx": x.grad}
    for name, _ in param_shapes(arch):
        out["grad." + name] = p[name].grad
    weights = {k: v.detach() for k, v in p.items()}
    return s, mean, std, weights, out


def write_ckpt(path, arch, seed, mean, std, weights):
    n_params = sum(int(v.numel()) for v in weights.values())
    meta = [("format", "concord-checkpoint-1"), ("arch", arch), ("in_c", str(C)), ("in_h", str(H)), ("in_w", str(W)),
            ("classes", str(K)), ("width", "1"), ("hidden", ",".join(map(str, MLP_HIDDEN)) if arch == "mlp" else "256,256"),
            ("dropout", "0.5"), ("head", "softmax"), ("rule", "bp"), ("rule_opts", RULE_OPTS), ("fb_count", "0"),
            ("step", "0"), ("n_params", str(n_params)), ("kind", "fixture"), ("fixture_seed", str(seed)),
            ("generator", "scripts/make_fixtures.py")]
    tensors = [("norm.mean", mean), ("norm.std", std)] + list(weights.items())
    zeros = torch.zeros(n_params, dtype=torch.float64)
    tensors += [("optim.m", zeros), ("optim.v", zeros)]
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    db = sqlite3.connect(tmp)
    db.executescript("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
                     "CREATE TABLE tensor(name TEXT PRIMARY KEY, shape TEXT, data BLOB);")
    db.executemany("INSERT INTO meta VALUES(?,?)", meta)
    db.executemany("INSERT INTO tensor VALUES(?,?,?)",
                   [(n, ",".join(map(str, t.shape)), t.numpy().astype("<f4").tobytes()) for n, t in tensors])
    db.commit()
    db.close()
    os.replace(tmp, path)


def write_bin(path, out):
    with open(path + ".tmp", "wb") as f:
        f.write(b"CCFIX001" + struct.pack("<I", len(out)))
        for name, t in out.items():
            t = t.detach().to(torch.float64)
            f.write(struct.pack("<I", len(name)) + name.encode("ascii"))
            f.write(struct.pack("<I", t.dim()) + struct.pack(f"<{t.dim()}I", *t.shape))
            f.write(t.numpy().astype("<f8").tobytes())
    os.replace(path + ".tmp", path)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    sys.dont_write_bytecode = True  # no scripts/__pycache__ in the tree
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ckpt_to_torch
    for arch, seed in (("mlp", 1000), ("lenet5", 2000)):
        s, mean, std, weights, out = reference(arch, seed)
        ckpt = os.path.join(outdir, arch + ".ckpt")
        write_ckpt(ckpt, arch, s, mean, std, weights)
        write_bin(os.path.join(outdir, arch + ".bin"), out)
        net = ckpt_to_torch.load(ckpt)
        with torch.no_grad():
            got = net(out["x"].float()).double()
        diff = (got - out["logits"]).abs().max().item()
        assert diff < 1e-4, f"{ckpt}: ckpt_to_torch logits differ from the float64 reference by {diff:.3g}"
        print(f"{arch}: seed {s}, loss {out['loss'].item():.6f}, {len(out)} records; "
              f"ckpt_to_torch float32 logits max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
