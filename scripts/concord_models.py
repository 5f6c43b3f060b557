"""concord_models.py -- Concord's architectures (harness/models.c) as plain Python graphs: no torch.

Used by scripts/import_torch.py (which tensors a checkpoint of an architecture holds, in ckpt_save's
order, with their shapes) and scripts/ckpt_to_torch.py (which builds the torch modules and runs the
graph). It mirrors models.c builder by builder; a drift shows at once, because ckpt_load checks every
imported tensor's name and shape against the C model (and the import tests cover every architecture).

    spec = Spec("resnet20", 3, 32, 32, 10, width=0.25)
    g = build(spec)                 # g.nodes: Node(kind, name, inp, inp2, c, h, w, ic, ih, iw, k, stride, pad, bias, p)
    tensors(g, rule_of_layer)       # [(name, shape, kind)] exactly as ckpt_save writes them

Shape letters: C channels, H, W; K classes (or hash bits); D_in = ic*ih*iw of a layer's input.
"""
import math
import struct

ARCHS = ("mlp", "lenet5", "alexnet", "vgg16", "resnet18", "resnet20")
RULES = ("bp", "fa", "dfa", "usf", "brsf", "frsf")
STATEFUL = {"fa": "R", "frsf": "M", "dfa": "D"}  # rules that keep a per-layer state tensor (rules/*.c)


class Refusal(Exception):
    """An input Concord cannot import: the message is one line naming the file and the fix."""


def f32(x):
    """x rounded to float32, as a Python float (C stores spec floats as float)."""
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def lroundf(x):
    """C's lroundf: nearest integer, halves away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


class Spec:
    """ModelSpec (harness/model.h): everything needed to rebuild a model."""

    def __init__(self, arch, in_c, in_h, in_w, classes, width=1.0, hidden="256,256", dropout=0.5, head="softmax"):
        self.arch, self.in_c, self.in_h, self.in_w, self.classes = arch, int(in_c), int(in_h), int(in_w), int(classes)
        self.width, self.hidden, self.dropout, self.head = f32(width), str(hidden), f32(dropout), head

    def ch(self, c):
        """models.c ch(): a channel count scaled by --width (float product, lroundf, at least 1)."""
        v = lroundf(f32(f32(c) * self.width))
        return v if v >= 1 else 1


class Node:
    __slots__ = ("kind", "name", "inp", "inp2", "c", "h", "w", "ic", "ih", "iw", "k", "stride", "pad", "bias", "p")

    def __init__(self, **kw):
        for s in self.__slots__:
            setattr(self, s, kw.get(s))

    def in_dim(self):
        return self.ic * self.ih * self.iw

    def w_shape(self):
        return (self.c, self.in_dim()) if self.kind == "linear" else (self.c, self.ic, self.k, self.k)

    def fan_in(self):
        return self.ic * self.k * self.k if self.kind == "conv" else self.in_dim()

    def fan_out(self):
        return self.c * self.k * self.k if self.kind == "conv" else self.c


class Graph:
    """The model graph: model_add_* of model.c, with the same output-shape rules."""

    def __init__(self, spec):
        self.spec, self.nodes = spec, []

    def _shape(self, i):
        if i < 0:
            return self.spec.in_c, self.spec.in_h, self.spec.in_w
        n = self.nodes[i]
        return n.c, n.h, n.w

    def add(self, kind, name, inp, **kw):
        ic, ih, iw = self._shape(inp)
        n = Node(kind=kind, name=name, inp=inp, inp2=None, ic=ic, ih=ih, iw=iw, c=ic, h=ih, w=iw, k=0, stride=1,
                 pad=0, bias=0, p=0.0)
        if kind == "gap":
            n.h = n.w = 1
        elif kind == "flatten":
            n.c, n.h, n.w = ic * ih * iw, 1, 1
        elif kind == "linear":
            n.c, n.h, n.w, n.bias = kw["out"], 1, 1, 1
        elif kind == "conv":
            n.k, n.stride, n.pad, n.bias, n.c = kw["k"], kw["stride"], kw["pad"], kw["bias"], kw["oc"]
            n.h, n.w = (ih + 2 * n.pad - n.k) // n.stride + 1, (iw + 2 * n.pad - n.k) // n.stride + 1
        elif kind == "maxpool":
            n.k, n.stride = kw["k"], kw["stride"]
            n.h, n.w = (ih - n.k) // n.stride + 1, (iw - n.k) // n.stride + 1
        elif kind == "add":
            n.inp2 = kw["b"]
            if self._shape(kw["b"]) != (n.c, n.h, n.w):
                raise Refusal(f"{self.spec.arch}: residual shapes differ at {name}")
        elif kind == "dropout":
            n.p = kw["p"]
        if n.h < 1 or n.w < 1:
            raise Refusal(f"{self.spec.arch}: input {self.spec.in_c}x{self.spec.in_h}x{self.spec.in_w} is too small "
                          f"(a layer's output would be {n.h}x{n.w}); pass the size the model was trained on with --input")
        self.nodes.append(n)
        return len(self.nodes) - 1

    def param_layers(self):
        return [n for n in self.nodes if n.kind in ("linear", "conv")]


def _head(g, name, x):
    x = g.add("linear", name, x, out=g.spec.classes)
    if g.spec.head == "hash":
        x = g.add("tanh", "", x)
    return x


def _mlp(g):
    x = g.add("flatten", "", g.add("norm", "norm", -1))
    widths = []
    for t in g.spec.hidden.split(","):
        if not t.strip().isdigit() or int(t) < 1:
            raise Refusal(f"--hidden {g.spec.hidden}: expected comma-separated positive widths")
        widths.append(int(t))
    for k, wd in enumerate(widths):
        x = g.add("relu", "", g.add("linear", f"fc{k + 1}", x, out=wd))
    _head(g, f"fc{len(widths) + 1}", x)


def _lenet5(g):
    if g.spec.in_h < 12 or g.spec.in_w < 12:
        raise Refusal("lenet5 needs inputs of at least 12x12")
    x = g.add("norm", "norm", -1)
    x = g.add("maxpool", "", g.add("relu", "", g.add("conv", "conv1", x, oc=6, k=5, stride=1, pad=2, bias=1)), k=2, stride=2)
    x = g.add("maxpool", "", g.add("relu", "", g.add("conv", "conv2", x, oc=16, k=5, stride=1, pad=0, bias=1)), k=2, stride=2)
    x = g.add("flatten", "", x)
    x = g.add("relu", "", g.add("linear", "fc1", x, out=120))
    x = g.add("relu", "", g.add("linear", "fc2", x, out=84))
    _head(g, "fc3", x)


def _alexnet(g):
    s = g.spec
    if s.in_h < 8 or s.in_w < 8:
        raise Refusal("alexnet needs inputs of at least 8x8")
    x = g.add("norm", "norm", -1)
    for i, c in enumerate((64, 192, 384, 256, 256)):
        k = 5 if i < 2 else 3
        x = g.add("relu", "", g.add("conv", f"features.conv{i + 1}", x, oc=s.ch(c), k=k, stride=1, pad=k // 2, bias=1))
        if i < 2 or i == 4:
            x = g.add("maxpool", "", x, k=2, stride=2)
    x = g.add("dropout", "", g.add("flatten", "", x), p=s.dropout)
    x = g.add("relu", "", g.add("linear", "classifier.fc1", x, out=s.ch(512)))
    x = g.add("dropout", "", x, p=s.dropout)
    x = g.add("relu", "", g.add("linear", "classifier.fc2", x, out=s.ch(512)))
    _head(g, "classifier.fc3", x)


VGG16_CFG = (64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0)


def _vgg16(g):
    s = g.spec
    if s.in_h < 32 or s.in_w < 32:
        raise Refusal("vgg16 needs inputs of at least 32x32 (5 poolings)")
    x, k = g.add("norm", "norm", -1), 0
    for c in VGG16_CFG:
        if not c:
            x = g.add("maxpool", "", x, k=2, stride=2)
            continue
        k += 1
        x = g.add("conv", f"features.conv{k}", x, oc=s.ch(c), k=3, stride=1, pad=1, bias=1)
        x = g.add("relu", "", g.add("bn", f"features.bn{k}", x))
    x = g.add("dropout", "", g.add("flatten", "", x), p=s.dropout)
    _head(g, "classifier", x)


def _block(g, pre, x, planes, stride):
    inc = g.spec.in_c if x < 0 else g.nodes[x].c
    y = g.add("conv", f"{pre}.conv1", x, oc=planes, k=3, stride=stride, pad=1, bias=0)
    y = g.add("relu", "", g.add("bn", f"{pre}.bn1", y))
    y = g.add("bn", f"{pre}.bn2", g.add("conv", f"{pre}.conv2", y, oc=planes, k=3, stride=1, pad=1, bias=0))
    sc = x
    if stride != 1 or inc != planes:
        sc = g.add("bn", f"{pre}.shortcut.1", g.add("conv", f"{pre}.shortcut.0", x, oc=planes, k=1, stride=stride, pad=0, bias=0))
    return g.add("relu", "", g.add("add", "", y, b=sc))


def _resnet(g, planes, blocks):
    s = g.spec
    minsz = 1 << (len(planes) - 1)
    if s.in_h < minsz or s.in_w < minsz:
        raise Refusal(f"{s.arch} needs inputs of at least {minsz}x{minsz}")
    x = g.add("norm", "norm", -1)
    x = g.add("relu", "", g.add("bn", "bn1", g.add("conv", "conv1", x, oc=s.ch(planes[0]), k=3, stride=1, pad=1, bias=0)))
    for st, (p, nb) in enumerate(zip(planes, blocks)):
        for b in range(nb):
            x = _block(g, f"layer{st + 1}.{b}", x, s.ch(p), 2 if (st > 0 and b == 0) else 1)
    _head(g, "linear", g.add("flatten", "", g.add("gap", "", x)))


BUILDERS = {
    "mlp": _mlp, "lenet5": _lenet5, "alexnet": _alexnet, "vgg16": _vgg16,
    "resnet18": lambda g: _resnet(g, (64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet20": lambda g: _resnet(g, (16, 32, 64), (3, 3, 3)),
}


def build(spec):
    if spec.arch not in BUILDERS:
        raise Refusal(f"unknown model '{spec.arch}'; Concord rebuilds {', '.join(ARCHS)} (see concord models)")
    if not spec.width > 0 or spec.width > 64:
        raise Refusal(f"--width {spec.width:g}: expected a multiplier in (0, 64]")
    if spec.head not in ("softmax", "hash"):
        raise Refusal(f"head '{spec.head}': expected softmax or hash")
    g = Graph(spec)
    BUILDERS[spec.arch](g)
    return g


def layer_rules(g, rule, last_layer_bp):
    """rule_attach: the rule of every linear/conv layer (bp in the last one with --last-layer-bp)."""
    layers = g.param_layers()
    return {n.name: ("bp" if (last_layer_bp and n is layers[-1]) else rule) for n in layers}


def state_shape(n, rule, classes):
    """rule.<layer>.state: FA's R and frSF's M have W's element count, DFA's D is (D_in, K); flat."""
    if rule in ("fa", "frsf"):
        return (math.prod(n.w_shape()),)
    if rule == "dfa":
        return (n.in_dim() * classes,)
    return None


def tensors(g, rules):
    """[(name, shape, kind)] in ckpt_save's order (model_finalize's add_tensor calls), kind in
    param | buffer | rule | optim. rules: layer name -> rule (layer_rules)."""
    out, n_params = [], 0
    for n in g.nodes:
        if n.kind in ("linear", "conv"):
            out.append((f"{n.name}.weight", n.w_shape(), "param"))
            n_params += math.prod(n.w_shape())
            if n.bias:
                out.append((f"{n.name}.bias", (n.c,), "param"))
                n_params += n.c
            shp = state_shape(n, rules[n.name], g.spec.classes)
            if shp:
                out.append((f"rule.{n.name}.state", shp, "rule"))
        elif n.kind == "bn":
            out += [(f"{n.name}.weight", (n.c,), "param"), (f"{n.name}.bias", (n.c,), "param"),
                    (f"{n.name}.running_mean", (n.c,), "buffer"), (f"{n.name}.running_var", (n.c,), "buffer")]
            n_params += 2 * n.c
        elif n.kind == "norm":
            out += [(f"{n.name}.mean", (n.c,), "buffer"), (f"{n.name}.std", (n.c,), "buffer")]
    out += [("optim.m", (n_params,), "optim"), ("optim.v", (n_params,), "optim")]
    return out


def n_params(g):
    return sum(math.prod(s) for _, s, k in tensors(g, {n.name: "bp" for n in g.param_layers()}) if k == "param")


def rule_opts_text(usf_scale="xavier", magnitude="uniform", brsf_resample="batch", last_layer_bp=0, rule_seed=0):
    """rule_opts_format (rules/table.c): the canonical meta text."""
    return (f"usf-scale={usf_scale};magnitude={magnitude};brsf-resample={brsf_resample};"
            f"last-layer-bp={int(last_layer_bp)};rule-seed={int(rule_seed)}")


def rule_opts_parse(text):
    """rule_opts_from_text: dict with the defaults for what the text does not set."""
    o = {"usf-scale": "xavier", "magnitude": "uniform", "brsf-resample": "batch", "last-layer-bp": 0, "rule-seed": 0}
    for tok in (text or "").split(";"):
        if "=" in tok:
            k, v = tok.split("=", 1)
            if k in o:
                o[k] = int(v) if k in ("last-layer-bp", "rule-seed") else v
    return o
