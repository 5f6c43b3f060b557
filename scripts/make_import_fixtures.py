#!/usr/bin/python3
"""make_import_fixtures.py -- PyTorch models in the usual key layouts, and what PyTorch computes with them,
for tests/test_import.c (`concord import` checked against PyTorch on every architecture).

    /usr/bin/python3 scripts/make_import_fixtures.py tests/fixtures/import     (or: make import-fixtures)

Independent of what it checks: the models are written here in the layouts researchers use (none of
scripts/import_torch.py, concord_models.py or ckpt_to_torch.py is imported), the feedback layers are
custom autograd Functions in the style of the reference torch_ref.py, and every number is computed by
torch in float64 from float32 weights and inputs (so the only error left is Concord's float32).

Per architecture, tiny widths and inputs (a few KB each):
  mlp       1x12x12, 16-8 hidden    top-level nn.Sequential (keys 1.weight, 3.weight, 5.weight)
  lenet5    1x12x16                 features.N / classifier.N
  alexnet   3x16x12, width 1/32     features.N / classifier.N with dropouts (torchvision style)
  vgg16     1x32x32, width 1/64     features.N (conv, BN, ReLU) / classifier.1, saved as
                                    {"epoch": 7, "state_dict": {"module.<key>": ...}} (DataParallel, training dict)
  resnet18  3x16x12, width 1/64     torchvision: layerS.B.downsample.0/1, fc (fc has no feedback: exact BP)
  resnet20  3x16x12, width 1/16     kuangliu: layerS.B.shortcut.0/1, linear
  mlph      1x12x12, 12-10 hidden   an mlp with an 8-bit tanh hash head named hash_layer
Every conv/linear layer carries `weight_backward` = |M|, M ~ U(-a, a), a = sqrt(6/(fan_in+fan_out))
(>= 0, so the same file is a valid fa model, B = |M|, and frsf model, B = |M| * sign(W)). mlp.pt and
lenet5.pt also carry BioTorch's DFA matrices `weight_dfa`: (K, fan_in) for linear layers, (K, C_in, KH,
KW) for conv layers (one file for several rules: the importer takes its rule's tensor). The test derives
BioTorch's uSF file, `weight_backward` = sign(W), from mlp.pt.

<case>.bin (CCIMP001 records, float32; layout in ckpt_to_torch.write_records): x (N,C,H,W), y (N),
dout (N,K) = d loss / d output (loss: summed cross-entropy of y; hash head: sum(out * R), R fixed +-1),
logits (N,K), dx_true (autograd through W), and dx_<rule> = autograd through each rule's feedback:
  fa: B = |M|   frsf: B = |M| sign(W)   usf: B = mean|W| sign(W) (torch_ref's meanabs)
  usf_none (mlp_usf.pt): B = sign(W)   dfa: dx = e weight_dfa (conv: BioTorch's conv2d_input of e
  broadcast over the output map)   brsf_mean (mlp): E over brSF draws = B = (a/2) sign(W) per layer.
Inputs are redrawn until no ReLU input and no max-pool runner-up lies within MARGIN of the branch point.
legacy_mlp.pt (the pre-1.6 torch.save format) and not_torch.pt: for the refusal tests.
"""
import collections
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N = 2
MARGIN = 1e-4
torch.set_num_threads(1)


# --------------------------------------------------------------------------- feedback layers
class FBLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, fb):
        ctx.save_for_backward(x, fb)
        return F.linear(x, w, b)

    @staticmethod
    def backward(ctx, gy):
        x, fb = ctx.saved_tensors
        return gy.mm(fb), gy.t().mm(x), gy.sum(0), None


class FBConv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, fb, stride, padding):
        ctx.save_for_backward(x, fb)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, w, b, stride, padding)

    @staticmethod
    def backward(ctx, gy):
        x, fb = ctx.saved_tensors
        gx, gw, gb = torch.ops.aten.convolution_backward(gy, x, fb, [fb.shape[0]], [ctx.stride] * 2, [ctx.padding] * 2,
                                                         [1, 1], False, [0, 0], 1, [True, True, ctx.needs_input_grad[2]])
        return gx, gw, gb, None, None, None


class DFAFn(torch.autograd.Function):
    """BioTorch's DFA: the input gradient is the output error e projected by weight_dfa."""

    @staticmethod
    def forward(ctx, x, w, b, wd, layer):
        ctx.save_for_backward(x, wd)
        ctx.layer = layer
        return layer.plain(x, w, b)

    @staticmethod
    def backward(ctx, gy):
        x, wd = ctx.saved_tensors
        L = ctx.layer
        e = L.box["e"]
        if isinstance(L, Lin):
            return e.mm(wd), None, None, None, None
        go = e[:, :, None, None].expand(e.shape[0], e.shape[1], gy.shape[2], gy.shape[3])
        return torch.nn.grad.conv2d_input(x.shape, wd, go, L.stride, L.padding), None, None, None, None


class FBMixin:
    """mode: true (native autograd) | fa | frsf | usf | usf_none | brsf_mean | dfa."""
    mode = "true"
    exact = False  # this layer always uses W (the resnet18 fc)

    def fan(self):
        w = self.weight
        rf = w[0, 0].numel() if w.dim() == 4 else 1
        return w.shape[1] * rf, w.shape[0] * rf

    def fb_matrix(self):
        w = self.weight.detach()
        sgn = torch.sign(w)
        if self.mode == "fa":
            return self.weight_backward
        if self.mode == "frsf":
            return self.weight_backward.abs() * sgn
        if self.mode == "usf":
            return w.abs().mean() * sgn
        if self.mode == "usf_none":
            return sgn
        if self.mode == "brsf_mean":
            fi, fo = self.fan()
            return (6.0 / (fi + fo)) ** 0.5 / 2 * sgn
        raise ValueError(self.mode)

    def forward(self, x):
        if self.mode == "true" or self.exact:
            return self.plain(x, self.weight, self.bias)
        if self.mode == "dfa":
            return DFAFn.apply(x, self.weight, self.bias, self.weight_dfa, self)
        if isinstance(self, Lin):
            return FBLinearFn.apply(x, self.weight, self.bias, self.fb_matrix())
        return FBConv2dFn.apply(x, self.weight, self.bias if self.bias is not None else None, self.fb_matrix(),
                                self.stride[0], self.padding[0])


class Lin(FBMixin, nn.Linear):
    def plain(self, x, w, b):
        return F.linear(x, w, b)


class Conv(FBMixin, nn.Conv2d):
    def plain(self, x, w, b):
        return F.conv2d(x, w, b, self.stride, self.padding)


def conv(i, o, k, s=1, p=0, bias=True):
    return Conv(i, o, k, s, p, bias=bias)


# --------------------------------------------------------------------------- architectures
def ch(c, width):
    return max(1, int(np.floor(c * width + 0.5)))


def mlp():
    return nn.Sequential(nn.Flatten(), Lin(144, 16), nn.ReLU(), Lin(16, 8), nn.ReLU(), Lin(8, 10))


class HashMLP(nn.Module):
    """An mlp with an 8-bit tanh code layer named hash_layer (as deep-hashing code often names it)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), Lin(144, 12), nn.ReLU(), Lin(12, 10), nn.ReLU())
        self.hash_layer = Lin(10, 8)

    def forward(self, x):
        return torch.tanh(self.hash_layer(self.layers(x)))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(conv(1, 6, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2), conv(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(Lin(32, 120), nn.ReLU(), Lin(120, 84), nn.ReLU(), Lin(84, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class AlexNet(nn.Module):
    def __init__(self, w=1 / 32):
        super().__init__()
        c = [ch(v, w) for v in (64, 192, 384, 256, 256)]
        self.features = nn.Sequential(
            conv(3, c[0], 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2), conv(c[0], c[1], 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),
            conv(c[1], c[2], 3, 1, 1), nn.ReLU(), conv(c[2], c[3], 3, 1, 1), nn.ReLU(), conv(c[3], c[4], 3, 1, 1), nn.ReLU(),
            nn.MaxPool2d(2))
        f = ch(512, w)
        self.classifier = nn.Sequential(nn.Dropout(0.5), Lin(c[4] * 2 * 1, f), nn.ReLU(), nn.Dropout(0.5), Lin(f, f), nn.ReLU(), Lin(f, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class VGG16(nn.Module):
    def __init__(self, w=1 / 64, classifier=1, in_c=1):
        super().__init__()
        layers, i = [], in_c
        for c in (64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0):
            if c == 0:
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [conv(i, ch(c, w), 3, 1, 1), nn.BatchNorm2d(ch(c, w)), nn.ReLU()]
                i = ch(c, w)
        self.features = nn.Sequential(*layers)
        if classifier == 1:
            self.classifier = nn.Sequential(nn.Dropout(0.5), Lin(i, 10))
        else:  # torchvision's ImageNet-style 3-layer classifier: not Concord's vgg16 (a refusal test)
            self.classifier = nn.Sequential(Lin(i, 16), nn.ReLU(), nn.Dropout(), Lin(16, 16), nn.ReLU(), nn.Dropout(), Lin(16, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class Block(nn.Module):
    """BasicBlock; projection named `downsample` (torchvision) or `shortcut` (kuangliu)."""

    def __init__(self, i, o, s, proj_name):
        super().__init__()
        self.conv1, self.bn1 = conv(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = conv(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
        self.proj_name = proj_name
        if s != 1 or i != o:
            setattr(self, proj_name, nn.Sequential(conv(i, o, 1, s, 0, bias=False), nn.BatchNorm2d(o)))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        p = getattr(self, self.proj_name, None)
        return self.relu2(y + (x if p is None else p(x)))


class ResNet(nn.Module):
    def __init__(self, planes, blocks, w, proj_name, head_name, classes=10, hash_head=False):
        super().__init__()
        p = [ch(v, w) for v in planes]
        self.conv1, self.bn1, self.relu = conv(3, p[0], 3, 1, 1, bias=False), nn.BatchNorm2d(p[0]), nn.ReLU()
        i = p[0]
        for st, (o, nb) in enumerate(zip(p, blocks)):
            seq = []
            for b in range(nb):
                seq.append(Block(i, o, 2 if (st > 0 and b == 0) else 1, proj_name))
                i = o
            setattr(self, f"layer{st + 1}", nn.Sequential(*seq))
        self.nstages, self.head_name, self.hash_head = len(p), head_name, hash_head
        setattr(self, head_name, Lin(i, classes))

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for st in range(self.nstages):
            x = getattr(self, f"layer{st + 1}")(x)
        x = getattr(self, self.head_name)(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return torch.tanh(x) if self.hash_head else x


MAIN = ("fa", "frsf", "usf")
# name: (constructor, input CxHxW, classes, import options, rules whose feedback input gradient is recorded)
ARCHS = collections.OrderedDict([
    ("mlp", (mlp, (1, 12, 12), 10, "--model mlp --input 1x12x12 --mean 0.2860 --std 0.3530",
             ("fa", "frsf", "usf", "dfa", "usf_none", "brsf_mean"))),
    ("lenet5", (LeNet, (1, 12, 16), 10, "--model lenet5 --input 1x12x16 --mean 0.1307 --std 0.3081", MAIN + ("dfa",))),
    ("alexnet", (AlexNet, (3, 16, 12), 10, "--model alexnet --input 3x16x12 --dataset cifar10", MAIN)),
    ("vgg16", (VGG16, (1, 32, 32), 10, "--model vgg16 --input 1x32x32 --mean 0.5 --std 0.25", MAIN)),
    ("resnet18", (lambda: ResNet((64, 128, 256, 512), (2, 2, 2, 2), 1 / 64, "downsample", "fc"), (3, 16, 12), 10,
                  "--model resnet18 --input 3x16x12 --dataset cifar10", MAIN)),
    ("resnet20", (lambda: ResNet((16, 32, 64), (3, 3, 3), 1 / 16, "shortcut", "linear"), (3, 16, 12), 10,
                  "--model resnet20 --input 3x16x12 --mean 0.45 --std 0.22", MAIN)),
    ("mlph", (lambda: HashMLP(), (1, 12, 12), 8, "--model mlp --task hash --input 1x12x12 --mean 0.5 --std 0.3", MAIN)),
])


# --------------------------------------------------------------------------- drawing
def fill(net, rng, cifar100=False):
    """He-normal weights, small biases, non-trivial batch-norm; |M| feedback magnitudes (float32)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (Lin, Conv)):
                fi, fo = m.fan()
                m.weight.copy_(torch.from_numpy(rng.normal(0, (2.0 / fi) ** 0.5, m.weight.shape).astype(np.float32)))
                if m.bias is not None:
                    m.bias.copy_(torch.from_numpy(rng.uniform(-0.1, 0.1, m.bias.shape).astype(np.float32)))
                a = (6.0 / (fi + fo)) ** 0.5
                m.register_buffer("weight_backward", torch.from_numpy(np.abs(rng.uniform(-a, a, m.weight.shape)).astype(np.float32)))
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.from_numpy(rng.uniform(0.6, 1.4, c).astype(np.float32)))
                m.bias.copy_(torch.from_numpy(rng.uniform(-0.2, 0.2, c).astype(np.float32)))
                m.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.2, c).astype(np.float32)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32)))
                m.num_batches_tracked.fill_(int(rng.integers(1, 1000)))


def layers_of(net):
    return [m for m in net.modules() if isinstance(m, (Lin, Conv))]


def set_mode(net, mode):
    for m in layers_of(net):
        m.mode = mode


def margins(net, x):
    """Smallest |ReLU input| and smallest top-two gap of a max-pool window with a positive maximum, over
    the batch (float64 forward): closer than MARGIN, float32 could take another branch."""
    lo = [float("inf")]

    def relu_hook(mod, inp, out):
        lo[0] = min(lo[0], inp[0].abs().min().item())

    def pool_hook(mod, inp, out):
        t = inp[0]
        n, c, h, w = t.shape
        u = F.unfold(t.reshape(n * c, 1, h, w), 2, stride=2)  # (n*c, 4, windows)
        top2 = u.topk(2, dim=1).values
        live = top2[:, 0] > 0  # a window of zeros sends its gradient into a ReLU that passes none
        if live.any():
            lo[0] = min(lo[0], (top2[:, 0] - top2[:, 1])[live].min().item())

    hooks = [m.register_forward_hook(relu_hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    hooks += [m.register_forward_hook(pool_hook) for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return lo[0]


def draw_input(net, shape, rng):
    for _ in range(200):
        x = torch.from_numpy(rng.integers(0, 256, (N,) + shape) / 256.0)  # exact in float32
        if margins(net, norm_input(net, x)) > MARGIN:
            return x
    raise SystemExit("no input batch with every branch clear of the margin; change the seed")


def norm_input(net, x):
    return (x - net.norm_mean.view(1, -1, 1, 1)) / net.norm_std.view(1, -1, 1, 1)


def grads(net, x, y, hash_head, dout_fixed):
    """logits, dout and the input gradient (through x in [0,1], the normalisation included) per mode."""
    out = {}
    box = {}
    for L in layers_of(net):
        L.box = box
    for mode in ("true",) + net.rules:
        set_mode(net, mode)
        xr = x.clone().requires_grad_(True)
        z = net(norm_input(net, xr))
        if mode == "dfa":
            z.register_hook(lambda g: box.__setitem__("e", g))
        if hash_head:
            loss = (z * dout_fixed).sum()
        else:
            loss = F.cross_entropy(z, y, reduction="sum")
        (gx,) = torch.autograd.grad(loss, xr)
        if mode == "true":
            out["logits"] = z.detach()
            out["dout"] = dout_fixed if hash_head else (torch.softmax(z.detach(), 1) - F.one_hot(y, z.shape[1]))
        out[f"dx_{mode}"] = gx
    set_mode(net, "true")
    return out


def write_records(path, records):
    with open(path, "wb") as f:
        f.write(b"CCIMP001" + struct.pack("<I", len(records)))
        for name, arr in records:
            a = np.ascontiguousarray(np.asarray(arr, dtype=np.float64), "<f4")
            f.write(struct.pack("<I", len(name)) + name.encode() + struct.pack("<I", a.ndim))
            f.write(struct.pack(f"<{a.ndim}I", *a.shape) + a.tobytes())


def sd_with(net, feedback):
    """The float32 state_dict with the feedback tensors asked for: "backward" (|M|, BioTorch's name
    weight_backward), "dfa" (weight_dfa). A file may hold both; the importer takes its rule's."""
    sd = collections.OrderedDict()
    for k, v in net.state_dict().items():
        if k.endswith(("weight_backward", "weight_dfa")):
            mod = net.get_submodule(k.rsplit(".", 1)[0])
            if mod.exact or ("dfa" if k.endswith("weight_dfa") else "backward") not in feedback:
                continue
        sd[k] = v.float().clone() if v.is_floating_point() else v.clone()
    return sd


def dfa_matrices(net, rng, classes):
    with torch.no_grad():
        for m in layers_of(net):
            fi, _ = m.fan()
            shape = (classes, m.weight.shape[1]) if isinstance(m, Lin) else (classes,) + tuple(m.weight.shape[1:])
            a = (6.0 / (fi + classes)) ** 0.5
            m.register_buffer("weight_dfa", torch.from_numpy(rng.uniform(-a, a, shape).astype(np.float32)))


def make_case(name, out_dir, seed):
    ctor, shape, classes, opts, rules = ARCHS[name]
    rng = np.random.default_rng(seed)
    net = ctor()
    fill(net, rng)
    if "dfa" in rules:
        dfa_matrices(net, rng, classes)
    if name == "resnet18":
        net.fc.exact = True  # no feedback tensor: the importer infers --last-layer-bp
    mean, std = option_values(opts, shape[0])
    net.register_buffer("norm_mean", torch.tensor(mean, dtype=torch.float32))
    net.register_buffer("norm_std", torch.tensor(std, dtype=torch.float32))
    net.rules = tuple(rules)
    net.eval()
    feedback = ("backward",) + (("dfa",) if "dfa" in rules else ())
    files = {f"{name}.pt": feedback}
    for fname, fbs in files.items():
        sd = sd_with(net, fbs)
        sd.pop("norm_mean"), sd.pop("norm_std")
        if name == "vgg16":
            sd = {"epoch": 7, "state_dict": collections.OrderedDict((f"module.{k}", v) for k, v in sd.items())}
        torch.save(sd, os.path.join(out_dir, fname))
    net = net.double()
    x = draw_input(net, shape, rng)
    y = torch.from_numpy(rng.integers(0, classes, N))
    dout_fixed = torch.from_numpy(rng.choice([-1.0, 1.0], (N, classes)))
    r = grads(net, x, y, name == "mlph", dout_fixed)
    recs = [("x", x.numpy()), ("y", y.numpy()), ("dout", r["dout"].numpy()), ("logits", r["logits"].numpy())]
    recs += [(k, v.numpy()) for k, v in r.items() if k.startswith("dx_")]
    write_records(os.path.join(out_dir, f"{name}.bin"), recs)
    scale = r["logits"].abs().max().item()
    print(f"{name}: {sum(p.numel() for p in net.parameters())} parameters, |logits| <= {scale:.3g}, "
          f"records {', '.join(k for k, _ in recs)}")


def option_values(opts, c):
    words = opts.split()
    get = lambda k: words[words.index(k) + 1] if k in words else None  # noqa: E731
    if get("--mean"):
        m, s = [float(v) for v in get("--mean").split(",")], [float(v) for v in get("--std").split(",")]
        return (m * c if len(m) == 1 else m), (s * c if len(s) == 1 else s)
    ds = get("--dataset")
    return {"cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
            "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762])}[ds]


# --------------------------------------------------------------------------- refusal fixtures
def make_bad(out_dir):
    """The refusal tests in tests/test_import.c derive their damaged files from the fixtures above (a dropped
    key, a wrong shape...: python3 + numpy at test time); only two need files of their own: a legacy
    (pre-1.6) torch.save of the mlp, which takes torch to read, and a file that is not PyTorch at all."""
    m = mlp()
    fill(m, np.random.default_rng(99))
    sd = collections.OrderedDict((k, v) for k, v in m.state_dict().items() if not k.endswith("weight_backward"))
    torch.save(sd, os.path.join(out_dir, "legacy_mlp.pt"), _use_new_zipfile_serialization=False)
    with open(os.path.join(out_dir, "not_torch.pt"), "w") as f:
        f.write("this is not a PyTorch file\n")


def import_lines():
    """One line per (architecture, rule) import tests/test_import.c runs (usf_none and brsf_mean have
    tests of their own: a derived file, an average over draws)."""
    for name, (_, _, _, opts, rules) in ARCHS.items():
        llbp = " --last-layer-bp" if name == "resnet18" else ""
        for r in rules:
            if r in ("fa", "frsf", "dfa"):
                yield f"{name} {r} {name}.pt dx_{r} {opts} --rule {r}"
            elif r == "usf":
                yield f"{name} usf {name}.pt dx_usf {opts} --rule usf --usf-scale meanabs --ignore-feedback{llbp}"


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/import"
    os.makedirs(out_dir, exist_ok=True)
    for i, name in enumerate(ARCHS):
        make_case(name, out_dir, 1000 + i)
    make_bad(out_dir)
    with open(os.path.join(out_dir, "cases.txt"), "w") as f:
        f.write("# case rule file record options -- one `concord import` each; tests/test_import.c compares its\n"
                "# logits and dx_true, and the record (the feedback input gradient) when it is not '-'.\n"
                "# Written by scripts/make_import_fixtures.py.\n")
        for line in import_lines():
            f.write(line + "\n")
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{out_dir}: {len(os.listdir(out_dir))} files, {total / 1024:.0f} KB")


if __name__ == "__main__":
    main()
