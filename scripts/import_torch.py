#!/usr/bin/python3
"""import_torch.py -- the worker behind `concord import`: a PyTorch state_dict becomes a Concord checkpoint.

Run by harness/cmd_import.c (which owns the command line, validates the result with ckpt_load and
renames it into place); by hand:

    /usr/bin/python3 scripts/import_torch.py --from model.pt --model resnet20 --dataset cifar10 \
        --rule frsf --tmp out.ckpt.tmp

Needs python3 and numpy only: the .pt file is read by scripts/pt_reader.py (torch only for the legacy
pre-1.6 format). What it accepts and how feedback tensors become rule state: docs/import.md. In short:

  1. the tensors: Concord's own names, or the usual PyTorch layouts (sequential `features.N` /
     `classifier.N` indices, `layerS.B.conv1`, `downsample` for `shortcut`, `fc` for a ResNet's
     `linear`), matched to the architecture rebuilt from --model and the model options;
  2. the input normalisation (Concord's first layer): --mean/--std, else the file's `norm.*`, else the
     dataset's standard statistics;
  3. the rule state from each layer's feedback tensor (`weight_backward`, `weight_dfa`), checked to be
     what the rule can represent, so Concord's feedback input gradient equals the PyTorch autograd one;
  4. a checkpoint with ckpt_save's tables, meta keys and tensor order (docs/checkpoint.md), written to
     --tmp. Nothing else is written.

Every refusal is one line on stderr ("concord: FILE: what; fix"), exit status 2; a missing Python
package exits 3. OPTIONS below must list exactly the options of harness/cmd_import.c (a test checks).
"""
import argparse
import collections
import difflib
import json
import math
import os
import re
import sqlite3
import sys
import traceback

try:
    import numpy as np
except ImportError:
    print("concord: import needs numpy: apt-get install python3-numpy", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import concord_models as cm  # noqa: E402
from concord_models import Refusal  # noqa: E402
from pt_reader import Unsupported, read_pt  # noqa: E402

# name, value placeholder (None = flag), help -- the same table as harness/cmd_import.c
OPTIONS = [
    ("from", "FILE.pt", "the PyTorch file: a state_dict, or a dict holding one under state_dict/model/model_state_dict/net"),
    ("model", "ARCH", "architecture: mlp | lenet5 | alexnet | vgg16 | resnet18 | resnet20"),
    ("out", "CKPT", "the Concord checkpoint to write"),
    ("rule", "R", "rule the model was trained with: bp | fa | dfa | usf | brsf | frsf (default: side file, else bp)"),
    ("dataset", "D", "what the model was trained on: input shape, classes, default normalisation"),
    ("input", "CxHxW", "input shape per sample (default: from --dataset)"),
    ("classes", "K", "class count (default: the classifier's rows)"),
    ("mean", "M[,M...]", "input normalisation mean per channel, in [0,1] pixel units"),
    ("std", "S[,S...]", "input normalisation std per channel"),
    ("width", "X", "channel multiplier of the conv nets (default: from the first conv)"),
    ("hidden", "W,W", "mlp hidden widths (default: from the file)"),
    ("dropout", "P", "alexnet/vgg16 classifier dropout (inference ignores it)"),
    ("task", "classify|hash", "hash: a tanh code layer of --bits outputs"),
    ("bits", "K", "hash code length (default: the code layer's rows)"),
    ("usf-scale", "K", "usf scale: xavier|he-fanout|none|wstd|meanabs (default: inferred from weight_backward)"),
    ("magnitude", "K", "brsf/frsf magnitude distribution: uniform|halfnormal"),
    ("brsf-resample", "K", "brsf redraw: batch|forward"),
    ("last-layer-bp", None, "exact BP in the classifier (default: inferred when it has no feedback tensor)"),
    ("rule-seed", "S", "rule seed (brsf draws)"),
    ("frsf-abs", None, "frsf: take |weight_backward| as the magnitude even where its signs disagree with W"),
    ("ignore-feedback", None, "bp/usf/brsf: ignore the file's feedback tensors"),
    ("side", "FILE.json", "side file with options and meta (default: FILE.concord.json beside --from, if present)"),
]
SIDE_KEYS = {name for name, _, _ in OPTIONS} - {"from", "out", "side"}
FEEDBACK_SUFFIXES = ("weight_backward", "weight_dfa")
IGNORED_SUFFIXES = ("num_batches_tracked", "bias_backward", "bias_dfa")
USF_SCALES = ("xavier", "he-fanout", "none", "wstd", "meanabs")

# name: (C, H, W, classes, mean, std). Statistics: the standard published per-channel values of each
# training set (what transforms.Normalize commonly uses); None = no standard value, pass --mean/--std.
DATASETS = {
    "mnist": (1, 28, 28, 10, (0.1307,), (0.3081,)),
    "fashion-mnist": (1, 28, 28, 10, (0.2860,), (0.3530,)),
    "kmnist": (1, 28, 28, 10, (0.1918,), (0.3483,)),
    "cifar10": (3, 32, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": (3, 32, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "cifar100-coarse": (3, 32, 32, 20, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
for _sub, _k in (("balanced", 47), ("byclass", 62), ("bymerge", 47), ("digits", 10), ("letters", 26), ("mnist", 10)):
    DATASETS[f"emnist-{_sub}"] = (1, 28, 28, _k, None, None)
FIRST_CONV_BASE = {"alexnet": 64, "vgg16": 64, "resnet18": 64, "resnet20": 16}


# ------------------------------------------------------------------------------------------ options
def parse_args(argv):
    p = argparse.ArgumentParser(prog="import_torch.py", add_help=True)
    for name, arg, hlp in OPTIONS:
        if arg is None:
            p.add_argument(f"--{name}", dest=name, action="store_true", default=None, help=hlp)
        else:
            p.add_argument(f"--{name}", dest=name, metavar=arg, help=hlp)
    p.add_argument("--tmp", help="where to write the checkpoint (cmd_import.c renames it to --out)")
    p.add_argument("--source-hash", default="", help="FNV-1a-64 of --from (cmd_import.c computes it)")
    p.add_argument("--list-options", action="store_true", help="print the option names and exit")
    return vars(p.parse_args(argv))


def side_path(a):
    if a.get("side"):
        return a["side"]
    base = re.sub(r"\.(pt|pth|tar|bin|ckpt)$", "", a["from"])
    cand = base + ".concord.json"
    return cand if os.path.exists(cand) else None


def read_side(path):
    """A side file: the import options as JSON (names as on the command line) plus, from ckpt_to_torch.py,
    "meta" (the source checkpoint's meta rows) and "optim" (a .pt with optim.m / optim.v)."""
    try:
        with open(path) as f:
            side = json.load(f, object_pairs_hook=collections.OrderedDict)
    except OSError as e:
        raise Refusal(f"{path}: cannot read the side file: {e.strerror}")
    except ValueError as e:
        raise Refusal(f"{path}: not valid JSON ({e}); fix it or pass --side with another file")
    if not isinstance(side, dict):
        raise Refusal(f"{path}: the side file must hold a JSON object")
    for k in side:
        if k not in SIDE_KEYS and k not in ("meta", "optim"):
            raise Refusal(f"{path}: unknown key '{k}'; a side file takes {', '.join(sorted(SIDE_KEYS))}, meta, optim")
    return side


def merge_options(a):
    """Command line over side file. Returns (options dict, side meta, optim path or None, side path)."""
    sp = side_path(a)
    side = read_side(sp) if sp else {}
    opts = {}
    for k in SIDE_KEYS:
        v = a.get(k)
        if v is None and k in side:
            v = side[k]
            if isinstance(v, bool):
                v = v or None
            elif v is not None:
                v = str(v) if not isinstance(v, list) else ",".join(str(t) for t in v)
        opts[k] = v
    meta = side.get("meta") or collections.OrderedDict()
    optim = side.get("optim")
    if optim:
        optim = os.path.join(os.path.dirname(sp), optim)
    return opts, meta, optim, sp


# ------------------------------------------------------------------------------------------ the file
def read_npz(path):
    """numpy's .npz (np.savez(path, **state_dict)): the same keys, no pickle."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return collections.OrderedDict((k, z[k]) for k in z.files)
    except (ValueError, OSError) as e:
        raise Unsupported(f"not a readable .npz file ({e})") from None


def unwrap(obj, path, notes):
    """The state_dict inside what torch.save wrote: the dict itself, or the one under a usual key."""
    if isinstance(obj, dict):
        for k in ("state_dict", "model_state_dict", "model", "net", "params"):
            if isinstance(obj.get(k), dict):
                notes.append(f"the dict under '{k}'")
                return unwrap(obj[k], path, notes)
        flat = collections.OrderedDict()
        for k, v in obj.items():
            if not isinstance(k, str):
                raise Refusal(f"{path}: not a state_dict (a key is {k!r}); save model.state_dict()")
            if isinstance(v, np.ndarray):
                flat[k] = v
            elif not isinstance(v, (int, float, str, type(None))):
                raise Refusal(f"{path}: not a state_dict (key '{k}' holds a {type(v).__name__}); save model.state_dict()")
        if not flat:
            raise Refusal(f"{path}: holds no tensors; save model.state_dict()")
        return flat
    what = "single tensor" if isinstance(obj, np.ndarray) else type(obj).__name__
    raise Refusal(f"{path}: holds a {what}, not a state_dict; save model.state_dict()")


def strip_wrappers(state, notes):
    """DataParallel's `module.`, torch.compile's `_orig_mod.`, Lightning's `model.` on every key."""
    while True:
        for pre in ("module.", "_orig_mod.", "model."):
            if all(k.startswith(pre) for k in state):
                state = collections.OrderedDict((k[len(pre):], v) for k, v in state.items())
                notes.append(f"'{pre}' prefix stripped")
                break
        else:
            return state


class Module:
    """One torch module of the file: its key prefix, tensors by suffix, and position in the file."""

    def __init__(self, prefix, pos):
        self.prefix, self.pos, self.t, self.target = prefix, pos, collections.OrderedDict(), None

    def kind(self):
        w = self.t.get("weight")
        if "running_mean" in self.t or "running_var" in self.t:
            return "bn"
        if w is not None:
            return {4: "conv", 2: "linear", 1: "bn"}.get(w.ndim, "other")
        if "mean" in self.t or "std" in self.t:
            return "norm"
        return "other"

    def key(self, suffix):
        return f"{self.prefix}.{suffix}" if self.prefix else suffix


def group_modules(state):
    """(modules by prefix, Concord rule-state tensors `rule.<layer>.state` by layer)."""
    mods, rule_state = collections.OrderedDict(), {}
    for i, (k, v) in enumerate(state.items()):
        m = re.fullmatch(r"rule\.(.+)\.state", k)
        if m:
            rule_state[m.group(1)] = v
            continue
        prefix, _, suffix = k.rpartition(".")
        if prefix not in mods:
            mods[prefix] = Module(prefix, i)
        mods[prefix].t[suffix] = v
    return mods, rule_state


# ------------------------------------------------------------------------------------------ matching
def canonical(prefix, arch, head_name, hash_head):
    """The Concord name a usual PyTorch prefix stands for (aliases; sequential indices come later)."""
    parts = ["shortcut" if p == "downsample" else p for p in prefix.split(".")]
    name = ".".join(parts)
    if arch.startswith("resnet") and name == "fc":
        name = "linear"
    if hash_head and name in ("hash_layer", "hash", "hashing", "hash_fc", "fc_hash"):
        name = head_name
    return name


def match(mods, g, path):
    """Assigns every file module a Concord layer (m.target). Returns a short description of the layout."""
    spec = g.spec
    layers = [n for n in g.nodes if n.kind in ("conv", "linear", "bn", "norm")]
    by_name = {n.name: n for n in layers}
    head_name = g.param_layers()[-1].name
    used, how = set(), set()
    for m in mods.values():
        name = canonical(m.prefix, spec.arch, head_name, spec.head == "hash")
        if name in by_name and name not in used and m.kind() in (by_name[name].kind, "other"):
            m.target = by_name[name]
            used.add(name)
            how.add("Concord names" if name == m.prefix else
                    ("downsample->shortcut" if ".downsample." in f".{m.prefix}." else f"{m.prefix}->{name}"))
    seq = [m for m in mods.values() if m.target is None and re.search(r"(^|\.)\d+$", m.prefix)]
    seq.sort(key=lambda m: (mods_first(mods, m.prefix.rpartition(".")[0]), int(m.prefix.rpartition(".")[2])))
    free = [n for n in layers if n.name not in used and n.kind != "norm"]
    count = lambda ms, k: sum(1 for x in ms if (x.kind() if isinstance(x, Module) else x.kind) == k)  # noqa: E731
    unknown = [m for m in mods.values() if m.target is None and m not in seq]
    if unknown:
        raise Refusal(unknown_key_message(unknown[0], g, mods, path))
    if seq:
        kinds = ("conv", "bn", "linear")
        odd = [m for m in seq if m.kind() not in kinds]
        if odd:
            raise Refusal(unknown_key_message(odd[0], g, mods, path))
        diff = [k for k in kinds if count(seq, k) != count(free, k)]
        if diff:
            have = ", ".join(f"{count(seq, k)} {k} layers where {spec.arch} has {count(free, k)}" for k in diff)
            raise Refusal(f"{path}: the file's sequential layers ({seq[0].prefix}, ...) hold {have}: a different "
                          f"architecture, which Concord cannot rebuild (docs/import.md lists what each --model holds)")
        for m in seq:
            n = next(x for x in free if x.kind == m.kind() and x.name not in used)
            m.target = n
            used.add(n.name)
        how.add("sequential indices in layer order")
    missing = [n for n in layers if n.name not in used and n.kind != "norm"]
    if missing:
        raise Refusal(missing_key_message(missing[0], mods, path, spec))
    words = [h for h in ("Concord names", "sequential indices in layer order") if h in how]
    aliases = sorted(h for h in how if "->" in h)
    return " + ".join(words + (["aliases " + ", ".join(aliases)] if aliases else []))


def guess_arch(mods, spec, path):
    """'; its keys fit --model X' when another architecture takes every key of the file."""
    fits = []
    for arch in cm.ARCHS:
        if arch == spec.arch:
            continue
        for m in mods.values():
            m.target = None
        try:
            g = cm.build(cm.Spec(arch, spec.in_c, max(spec.in_h, 32), max(spec.in_w, 32), 1, 1.0, spec.hidden, 0.5, spec.head))
            match(mods, g, path)
            fits.append(arch)
        except Refusal:
            pass
    for m in mods.values():
        m.target = None
    return f"; its keys fit --model {' or '.join(fits)}" if fits else ""


def mods_first(mods, container):
    for i, p in enumerate(mods):
        if p.rpartition(".")[0] == container:
            return i
    return 0


def expected_keys(g):
    keys = []
    for n in g.nodes:
        if n.kind in ("conv", "linear"):
            keys += [f"{n.name}.weight"] + ([f"{n.name}.bias"] if n.bias else [])
        elif n.kind == "bn":
            keys += [f"{n.name}.{s}" for s in ("weight", "bias", "running_mean", "running_var")]
    return keys


def nearby(key, candidates, n=4):
    near = difflib.get_close_matches(key, candidates, n=n, cutoff=0.4)
    return ", ".join(near) if near else ", ".join(candidates[:n])


def describe(spec, options=True):
    """The architecture with the options that size it (not while matching names: they are not known yet)."""
    if not options:
        return spec.arch
    extra = f" --width {spec.width:g}" if spec.arch in FIRST_CONV_BASE else (f" --hidden {spec.hidden}" if spec.arch == "mlp" else "")
    return f"{spec.arch}{extra}"


def unknown_key_message(m, g, mods, path):
    key = m.key(next(iter(m.t)))
    hint = ""
    if re.search(r"\.conv3$", m.prefix) and g.spec.arch.startswith("resnet"):
        hint = " (a conv3 in a block means Bottleneck blocks, as in resnet50/101/152, which Concord cannot rebuild)"
    elif m.prefix in ("hash_layer", "hash", "hashing", "hash_fc", "fc_hash") and g.spec.head != "hash":
        hint = " (a hash code layer: pass --task hash)"
    return (f"{path}: unknown key '{key}' for {describe(g.spec, False)}{hint}; expected keys near it: "
            f"{nearby(key, expected_keys(g))} (docs/import.md lists the accepted layouts)")


def missing_key_message(n, mods, path, spec):
    key = f"{n.name}.weight"
    alt = key.replace(".shortcut.", ".downsample.")
    alt = f" (or '{alt}')" if alt != key else (" (or 'fc.weight')" if key == "linear.weight" else "")
    have = [m.key(s) for m in mods.values() for s in m.t]
    return (f"{path}: missing key '{key}'{alt}: {describe(spec, False)} has a layer {n.name} the file does not hold; "
            f"keys in the file near it: {nearby(key, have)}")


# ------------------------------------------------------------------------------------------ tensors
def as_f32(arr, key, path):
    a = np.asarray(arr)
    if a.dtype.kind not in "fiu":
        raise Refusal(f"{path}: key '{key}' holds {a.dtype} values, not numbers")
    a = a.astype("<f4")
    if not np.all(np.isfinite(a)):
        raise Refusal(f"{path}: key '{key}' holds NaN or Inf values; Concord cannot evaluate such a model")
    return a


def shape_check(m, suffix, want, path, spec):
    a = m.t[suffix]
    if tuple(a.shape) != tuple(want):
        key = m.key(suffix)
        tgt = f"{m.target.name}.{suffix.replace('weight_backward', 'weight')}"
        via = f" (Concord {tgt})" if tgt != key else ""
        hint = ""
        if a.ndim == 4 and len(want) == 4 and a.shape[-1] in (7, 11) and a.shape[-1] != want[-1]:
            hint = (f" (a {a.shape[-1]}x{a.shape[-1]} kernel: an ImageNet-style stem; Concord's {spec.arch} is the "
                    f"CIFAR-style network of harness/models.c, which cannot hold it)")
        raise Refusal(f"{path}: key '{key}'{via} has shape {list(a.shape)}, {describe(spec)} on "
                      f"{spec.in_c}x{spec.in_h}x{spec.in_w} with {spec.classes} outputs expects {list(want)}{hint}; "
                      f"check --model, --width, --hidden, --input and --classes")
    return as_f32(a, m.key(suffix), path)


def collect(mods, g, path):
    """Concord tensor name -> float32 array for parameters and batch-norm statistics; feedback tensors
    by layer name; notes."""
    spec, out, fb, notes = g.spec, {}, {}, []
    for m in mods.values():
        n = m.target
        allowed = {"conv": ("weight", "bias") + FEEDBACK_SUFFIXES, "linear": ("weight", "bias") + FEEDBACK_SUFFIXES,
                   "bn": ("weight", "bias", "running_mean", "running_var"), "norm": ("mean", "std")}[n.kind]
        for s in m.t:
            if s not in allowed and s not in IGNORED_SUFFIXES:
                raise Refusal(f"{path}: unknown key '{m.key(s)}' (layer {n.name} is a {n.kind}: it takes "
                              f"{', '.join(allowed)}); docs/import.md lists the accepted tensors")
        if n.kind in ("conv", "linear"):
            for s, want in (("weight", n.w_shape()), ("bias", (n.c,))):
                if s == "bias" and not n.bias:
                    if "bias" in m.t:
                        raise Refusal(f"{path}: key '{m.key('bias')}': {spec.arch}'s layer {n.name} has no bias, so Concord "
                                      f"cannot rebuild this model (a conv with bias before batch-norm)")
                    continue
                if s not in m.t:
                    raise Refusal(f"{path}: missing key '{m.key(s)}': layer {n.name} needs its {s}")
                out[f"{n.name}.{s}"] = shape_check(m, s, want, path, spec)
            fbs = {s: (m.key(s), as_f32(m.t[s], m.key(s), path)) for s in FEEDBACK_SUFFIXES if s in m.t}
            if fbs:
                fb[n.name] = fbs
        elif n.kind == "bn":
            if "running_mean" not in m.t or "running_var" not in m.t:
                raise Refusal(f"{path}: batch-norm '{m.prefix}' has no running_mean/running_var: the model was saved "
                              f"without its statistics (track_running_stats=False?); Concord evaluates in inference mode "
                              f"and needs them: save the model after training with track_running_stats=True")
            if ("weight" in m.t) != ("bias" in m.t):
                raise Refusal(f"{path}: batch-norm '{m.prefix}' has only one of weight/bias; both or neither (affine=False)")
            if "weight" not in m.t:
                m.t["weight"], m.t["bias"] = np.ones(n.c, "<f4"), np.zeros(n.c, "<f4")
                notes.append("affine-free batch-norm as gamma 1, beta 0")
            for s in ("weight", "bias", "running_mean", "running_var"):
                out[f"{n.name}.{s}"] = shape_check(m, s, (n.c,), path, spec)
            if np.any(out[f"{n.name}.running_var"] < 0):
                raise Refusal(f"{path}: batch-norm '{m.prefix}' has a negative running_var; the file is damaged")
        elif n.kind == "norm":
            for s in ("mean", "std"):
                if s in m.t:
                    out[f"{n.name}.{s}"] = shape_check(m, s, (n.c,), path, spec)
    return out, fb, sorted(set(notes))


# ------------------------------------------------------------------------------------------ the spec
def parse_shape(text, what):
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text or "")
    if not m or min(int(v) for v in m.groups()) < 1:
        raise Refusal(f"{what} {text}: expected CxHxW, e.g. 3x32x32")
    return tuple(int(v) for v in m.groups())


def dataset_info(name):
    """(C, H, W, classes, mean, std) or None for a dataset whose shape is not known from its name."""
    if not name:
        return None
    if name in DATASETS:
        return DATASETS[name]
    m = re.fullmatch(r"synthetic(?::(\d+)(?::(\d+x\d+x\d+)(?::(\d+))?)?)?", name)
    if m:
        c, h, w = parse_shape(m.group(2), "--dataset synthetic shape") if m.group(2) else (1, 28, 28)
        return (c, h, w, int(m.group(3) or 10), None, None)
    if name.startswith("png:"):
        return None
    raise Refusal(f"--dataset {name}: unknown dataset; use mnist, fashion-mnist, kmnist, emnist-<subset>, cifar10, "
                  f"cifar100, cifar100-coarse, png:DIR or synthetic:N:CxHxW:K (concord data info)")


def to_int(text, what, lo=1, hi=1 << 20):
    try:
        v = int(str(text))
    except ValueError:
        v = lo - 1
    if not lo <= v <= hi:
        raise Refusal(f"{what} {text}: expected an integer in [{lo}, {hi}]")
    return v


def to_float(text, what):
    try:
        v = float(str(text))
    except ValueError:
        raise Refusal(f"{what} {text}: expected a number") from None
    if not math.isfinite(v):
        raise Refusal(f"{what} {text}: expected a finite number")
    return v


def resolve_spec(o, meta, mods, path):
    arch = o["model"] or meta.get("arch")
    if not arch:
        raise Refusal(f"{path}: which architecture is it? pass --model ({', '.join(cm.ARCHS)})")
    if arch not in cm.ARCHS:
        raise Refusal(f"--model {arch}: Concord cannot rebuild this architecture; it has {', '.join(cm.ARCHS)} "
                      f"(see concord models; docs/import.md)")
    ds = dataset_info(o["dataset"])
    if o["input"]:
        c, h, w = parse_shape(o["input"], "--input")
    elif ds:
        c, h, w = ds[:3]
    elif "in_c" in meta:
        c, h, w = (to_int(meta[k], f"side meta {k}") for k in ("in_c", "in_h", "in_w"))
    else:
        raise Refusal(f"{path}: what input does the model take? pass --dataset (what it was trained on) or --input CxHxW")
    if o["task"] not in (None, "classify", "hash"):
        raise Refusal(f"--task {o['task']}: use classify or hash")
    head = {"hash": "hash", "classify": "softmax"}.get(o["task"]) or meta.get("head", "softmax")
    hidden = o["hidden"] or meta.get("hidden") or "256,256"
    if arch == "mlp" and not o["hidden"] and "hidden" not in meta:
        lin = [m for m in mods.values() if m.kind() == "linear"]
        if len(lin) >= 2:
            hidden = ",".join(str(m.t["weight"].shape[0]) for m in lin[:-1])
    width = to_float(o["width"], "--width") if o["width"] else (to_float(meta["width"], "side meta width") if "width" in meta else None)
    dropout = to_float(o["dropout"] or meta.get("dropout", 0.5), "--dropout")
    probe = cm.build(cm.Spec(arch, c, h, w, 1, width=width or 1.0, hidden=hidden, dropout=dropout, head=head))
    return probe, ds, dict(arch=arch, c=c, h=h, w=w, hidden=hidden, width=width, dropout=dropout, head=head)


def finish_spec(o, meta, mods, probe, s, ds, path):
    """Classes and width from the matched file when not given, then the real graph."""
    head_mod = next((m for m in mods.values() if m.target is probe.param_layers()[-1]), None)
    rows = head_mod.t["weight"].shape[0] if head_mod is not None and "weight" in head_mod.t else None
    given = o["bits"] if s["head"] == "hash" else o["classes"]
    if given:
        classes = to_int(given, "--bits" if s["head"] == "hash" else "--classes")
    elif "classes" in meta:
        classes = to_int(meta["classes"], "side meta classes")
    elif rows:
        classes = rows
        if s["head"] == "softmax" and ds and ds[3] != rows:
            raise Refusal(f"{path}: the classifier has {rows} rows but {o['dataset']} has {ds[3]} classes; pass "
                          f"--classes {rows} if the model was trained on another label set")
    else:
        raise Refusal(f"{path}: pass --classes")
    width = s["width"]
    if width is None:
        width = infer_width(mods, probe, path) if s["arch"] in FIRST_CONV_BASE else 1.0
    return cm.build(cm.Spec(s["arch"], s["c"], s["h"], s["w"], classes, width, s["hidden"], s["dropout"], s["head"]))


def infer_width(mods, probe, path):
    """A --width that reproduces every layer's channel count (the probe graph is at width 1, so its
    counts are the bases): each count c = lroundf(base * w) bounds w to [(c - 0.5) / base, (c + 0.5) / base)."""
    lo, hi, first = 0.0, 64.0, None
    for m in mods.values():
        n = m.target
        if n.kind not in ("conv", "linear") or n is probe.param_layers()[-1] or "weight" not in m.t:
            continue
        c = m.t["weight"].shape[0]
        first = first if first is not None else c / n.c
        lo, hi = max(lo, (c - 0.5) / n.c), min(hi, (c + 0.5) / n.c if c > 1 else (1.5 / n.c))
    for w in ([first] if first else []) + [(lo + hi) / 2]:
        w = cm.f32(w)
        if lo <= w < hi and all(cm.Spec(probe.spec.arch, 1, 1, 1, 1, w).ch(n.c) == mods_rows(mods, n)
                                 for n in probe.param_layers()[:-1] if mods_rows(mods, n) is not None):
            return w
    raise Refusal(f"{path}: cannot tell the --width from the file's channel counts (no multiplier of "
                  f"{probe.spec.arch}'s widths gives them all); pass --width, or the model is not a Concord {probe.spec.arch}")


def mods_rows(mods, n):
    m = next((m for m in mods.values() if m.target is n), None)
    return m.t["weight"].shape[0] if m is not None and "weight" in m.t else None


def retarget(mods, g):
    by_name = {n.name: n for n in g.nodes if n.name}
    for m in mods.values():
        m.target = by_name[m.target.name]


# ------------------------------------------------------------------------------------------ normalisation
def per_channel(text, c, what):
    vals = [to_float(t, what) for t in str(text).split(",")]
    if len(vals) == 1:
        vals *= c
    if len(vals) != c:
        raise Refusal(f"{what} {text}: {len(vals)} values for a model with {c} input channel{'s' if c > 1 else ''} "
                      f"(give {'one value' if c == 1 else f'1 or {c}'})")
    return np.array(vals, "<f4")


def normalisation(o, ds, tensors, c, path):
    if (o["mean"] is None) != (o["std"] is None):
        raise Refusal("--mean and --std go together (use --mean 0 --std 1 for a model that normalises nothing)")
    if o["mean"] is not None:
        mean, std, how = per_channel(o["mean"], c, "--mean"), per_channel(o["std"], c, "--std"), "--mean/--std"
    elif "norm.mean" in tensors and "norm.std" in tensors:
        mean, std, how = tensors["norm.mean"], tensors["norm.std"], "the file's norm.mean/norm.std"
    elif ds and ds[4] is not None:
        if ds[0] != c:
            raise Refusal(f"--dataset {o['dataset']} has {ds[0]} channels, the model takes {c}; pass --mean/--std")
        mean, std, how = np.array(ds[4], "<f4"), np.array(ds[5], "<f4"), f"{o['dataset']} standard statistics"
    else:
        raise Refusal(f"{path}: no input normalisation: pass --mean M[,M..] --std S[,S..] (what transforms.Normalize "
                      f"used; --mean 0 --std 1 if nothing), or --dataset mnist|fashion-mnist|kmnist|cifar10|cifar100")
    if not np.all(std > 0):
        raise Refusal(f"normalisation std {','.join(f'{v:g}' for v in std)}: every std must be > 0")
    return mean, std, how


# ------------------------------------------------------------------------------------------ rule state
def usf_candidates(n, w):
    """sign.c usf_scale for every --usf-scale, as float32 values."""
    fi, fo, w64 = n.fan_in(), n.fan_out(), w.astype(np.float64).ravel()
    mean = w64.sum() / w64.size
    return {"xavier": cm.f32(math.sqrt(2.0 / (fi + fo))), "he-fanout": cm.f32(math.sqrt(2.0 / fo)), "none": 1.0,
            "wstd": cm.f32(math.sqrt(((w64 - mean) ** 2).sum() / max(w64.size - 1, 1))),
            "meanabs": cm.f32(np.abs(w64).sum() / w64.size)}


def usf_scale_of(key, b, w, path):
    """s when b == s*sign(W) (sign(0) = 0), else a refusal."""
    s = float(np.abs(b).max())
    sw = np.sign(w)
    if not (s > 0 and np.all(np.sign(b) == sw) and np.all(np.abs(np.abs(b[sw != 0]) - s) <= 1e-6 * s)):
        raise Refusal(f"{path}: '{key}' is not s*sign(W) for one scale s, which is all usf can use; import the model "
                      f"as --rule fa to keep it as a fixed feedback matrix, or --ignore-feedback")
    return s


def dfa_state(n, key, d, classes, path):
    """DFA's D (D_in, K), flat, from a layer's weight_dfa: linear (K, D_in); conv (K, C, KH, KW) as BioTorch
    (the transposed convolution of the output error broadcast over the layer's output map) or
    (K, C, H, W), the whole input map (what ckpt_to_torch.py writes)."""
    k = classes
    if n.kind == "linear" and d.shape == (k, n.in_dim()):
        return np.ascontiguousarray(d.T).ravel()
    if n.kind == "conv" and d.shape == (k, n.ic, n.ih, n.iw):
        return np.ascontiguousarray(d.reshape(k, -1).T).ravel()
    if n.kind == "conv" and d.shape == (k, n.ic, n.k, n.k):
        full = np.zeros((n.ic, n.ih, n.iw, k), np.float64)
        dk = d.astype(np.float64)
        for i in range(n.k):
            for j in range(n.k):
                for oy in range(n.h):
                    iy = oy * n.stride - n.pad + i
                    if not 0 <= iy < n.ih:
                        continue
                    ox = np.arange(n.w) * n.stride - n.pad + j
                    ox = ox[(ox >= 0) & (ox < n.iw)]
                    full[:, iy, ox, :] += dk[:, :, i, j].T[:, None, :]
        return full.astype("<f4").ravel()
    want = f"({k}, {n.in_dim()})" if n.kind == "linear" else f"({k}, {n.ic}, {n.k}, {n.k}) or ({k}, {n.ic}, {n.ih}, {n.iw})"
    raise Refusal(f"{path}: '{key}' has shape {list(d.shape)}; dfa's feedback for layer {n.name} is {want} "
                  f"(classes x fan-in); check --classes and the model options")


def rule_state(rule, o, meta_opts, given, g, tensors, fb, concord_state, path):
    """(rule options dict, {layer: flat float32 state}, note). meta_opts: the side meta's rule options;
    given: they were stated (so usf-scale and last-layer-bp are not inferred)."""
    layers = g.param_layers()
    last = layers[-1]
    opts = dict(meta_opts)
    for k in ("usf-scale", "magnitude", "brsf-resample", "rule-seed"):
        if o[k] is not None:
            opts[k] = o[k] if k != "rule-seed" else to_int(o[k], "--rule-seed", 0, 2147483647)
    for k, names in (("usf-scale", USF_SCALES), ("magnitude", ("uniform", "halfnormal")), ("brsf-resample", ("batch", "forward"))):
        if opts[k] not in names:
            raise Refusal(f"--{k} {opts[k]}: unknown value; use one of {'|'.join(names)}")
    explicit_llbp = bool(o["last-layer-bp"]) or given
    if o["last-layer-bp"]:
        opts["last-layer-bp"] = 1
    have = {n.name for n in layers if n.name in fb or n.name in concord_state}
    if o["ignore-feedback"]:
        if rule in cm.STATEFUL:
            raise Refusal(f"--ignore-feedback: rule {rule} keeps a fixed feedback state and the file's is the only one; "
                          f"import as --rule bp and fine-tune with concord finetune --rule {rule} to draw a fresh one")
        have = set()
    elif not explicit_llbp and last.name not in have and len(have) == len(layers) - 1 and rule != "bp":
        opts["last-layer-bp"] = 1
    llbp = bool(opts["last-layer-bp"])
    states, notes, inferred = {}, [], False
    for n in layers:
        if n.name not in have:
            if rule in cm.STATEFUL and not (llbp and n is last):
                raise Refusal(f"{path}: layer {n.name} has no feedback tensor ({'weight_dfa' if rule == 'dfa' else 'weight_backward'}): "
                              f"--rule {rule} needs each layer's fixed feedback; import as --rule bp and fine-tune with "
                              f"concord finetune --rule {rule} to draw one")
            continue
        w = tensors[f"{n.name}.weight"]
        layer_rule = "bp" if (llbp and n is last) else rule
        if n.name in concord_state:
            key, b = f"rule.{n.name}.state", as_f32(concord_state[n.name], f"rule.{n.name}.state", path)
        else:  # the rule's own tensor when a layer holds both (a file made for several rules)
            pref = ("weight_dfa", "weight_backward") if layer_rule == "dfa" else ("weight_backward", "weight_dfa")
            key, b = next(fb[n.name][s] for s in pref if s in fb[n.name])
        if key.endswith("weight_dfa") and layer_rule != "dfa":
            if rule == "dfa":
                raise Refusal(f"{path}: '{key}': --last-layer-bp sends the classifier's error through W, not this DFA "
                              f"matrix; drop --last-layer-bp")
            raise Refusal(f"{path}: '{key}' is a DFA feedback matrix but the rule is {rule}; pass --rule dfa")
        if layer_rule in cm.STATEFUL and key.startswith("rule."):
            want = cm.state_shape(n, layer_rule, g.spec.classes)
            if tuple(b.shape) != want:
                raise Refusal(f"{path}: '{key}' has shape {list(b.shape)}, rule {layer_rule} on layer {n.name} keeps {list(want)}")
            states[n.name] = b.ravel()
            continue
        if layer_rule == "dfa":
            states[n.name] = dfa_state(n, key, b, g.spec.classes, path)
            continue
        if tuple(b.shape) != tuple(w.shape):
            raise Refusal(f"{path}: '{key}' has shape {list(b.shape)}, its weight {list(w.shape)}; a feedback matrix "
                          f"has the weight's shape (a (classes x fan_in) one belongs to --rule dfa)")
        if layer_rule == "bp":
            if not np.array_equal(b, w):
                why = "--last-layer-bp" if rule != "bp" else "--rule bp"
                raise Refusal(f"{path}: '{key}' differs from its weight but {why} sends the error through W; "
                              f"pass the rule the model was trained with, or --ignore-feedback")
        elif layer_rule == "fa":
            states[n.name] = b.ravel()
        elif layer_rule == "frsf":
            if np.all(b >= 0):
                states[n.name] = b.ravel()
            elif np.all(np.sign(b) == np.sign(w)) or o["frsf-abs"]:
                states[n.name] = np.abs(b).ravel()
            else:
                bad = int(np.sum(np.sign(b) != np.sign(w)))
                raise Refusal(f"{path}: '{key}' has signs that disagree with its weight's at {bad} of {b.size} elements; "
                              f"frsf's feedback is |M|*sign(W): pass --frsf-abs if the layer used |weight_backward|*sign(W), "
                              f"or --rule fa to keep it as a fixed feedback matrix")
        elif layer_rule == "usf":
            s = usf_scale_of(key, b, w, path)
            cands = usf_candidates(n, w)
            fits = [k for k in USF_SCALES if abs(cands[k] - s) <= 2e-6 * s]
            if o["usf-scale"] is None and not given and fits and not inferred:
                opts["usf-scale"], inferred = fits[0], True
            if opts["usf-scale"] not in fits:
                table = ", ".join(f"{k} {cands[k]:.6g}" for k in USF_SCALES)
                raise Refusal(f"{path}: '{key}' is {s:.6g}*sign(W), but --usf-scale {opts['usf-scale']} gives "
                              f"{cands[opts['usf-scale']]:.6g} on layer {n.name} ({table}); "
                              + (f"pass --usf-scale {fits[0]}" if fits else "no --usf-scale fits: import as --rule fa"))
        elif layer_rule == "brsf":
            notes.append("brsf weight_backward (one past draw) not imported: Concord redraws |M_t| every step")
    if rule in cm.STATEFUL and states:
        src = "rule.*.state" if any(k in concord_state for k in states) else ("weight_dfa" if rule == "dfa" else "weight_backward")
        notes.insert(0, f"{rule} state from {len(states)} {src} tensors")
    elif rule == "usf" and have:
        notes.insert(0, f"usf scale {opts['usf-scale']} checked on {len(have)} weight_backward tensors")
    elif rule == "usf":
        src = "--usf-scale" if o["usf-scale"] else ("the side file" if given else "the default: pass --usf-scale if the layers used another")
        notes.insert(0, f"usf scale {opts['usf-scale']} from {src}")
    if llbp:
        notes.append("last layer exact BP")
    return opts, states, "; ".join(sorted(set(notes), key=notes.index))


def choose_rule(o, meta, fb, concord_state, path):
    rule = o["rule"] or meta.get("rule")
    if rule is None:
        if (fb or concord_state) and not o["ignore-feedback"]:
            keys = [k for d in fb.values() for k, _ in d.values()][:2] or [f"rule.{k}.state" for k in list(concord_state)[:2]]
            raise Refusal(f"{path}: the file carries feedback tensors ({', '.join(keys)}, ...): say which rule made them "
                          f"with --rule fa|dfa|usf|brsf|frsf (or a side file)")
        rule = "bp"
    if rule not in cm.RULES:
        raise Refusal(f"--rule {rule}: unknown rule; use one of {', '.join(cm.RULES)} (concord rules)")
    return rule


# ------------------------------------------------------------------------------------------ writing
def meta_rows(g, rule, opts, mean, std, extras):
    s = g.spec
    rows = collections.OrderedDict()
    rows["format"] = "concord-checkpoint-1"
    rows["arch"] = s.arch
    for k, v in (("in_c", s.in_c), ("in_h", s.in_h), ("in_w", s.in_w), ("classes", s.classes)):
        rows[k] = str(v)
    rows["width"] = "%.9g" % s.width
    rows["hidden"] = s.hidden
    rows["dropout"] = "%.9g" % s.dropout
    rows["head"] = s.head
    rows["rule"] = rule
    rows["rule_opts"] = cm.rule_opts_text(opts["usf-scale"], opts["magnitude"], opts["brsf-resample"],
                                          opts["last-layer-bp"], opts["rule-seed"])
    rows["fb_count"] = str(extras.pop("fb_count", "0"))
    rows["step"] = str(extras.pop("step", "0"))
    rows["n_params"] = str(cm.n_params(g))
    rows["norm_mean"] = ",".join("%.9g" % v for v in mean)
    rows["norm_std"] = ",".join("%.9g" % v for v in std)
    for k, v in extras.items():
        if k not in rows or k in ("fb_count", "step"):
            rows[k] = str(v)
    return rows


def write_ckpt(tmp, rows, tensors_out):
    if os.path.exists(tmp):
        os.unlink(tmp)
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE tensor(name TEXT PRIMARY KEY, shape TEXT, data BLOB)")
        db.executemany("INSERT INTO meta VALUES(?,?)", list(rows.items()))
        for name, shape, arr in tensors_out:
            db.execute("INSERT INTO tensor VALUES(?,?,?)",
                       (name, ",".join(str(d) for d in shape), np.ascontiguousarray(arr, "<f4").tobytes()))
        db.execute("COMMIT")
        db.close()
    except (sqlite3.Error, OSError) as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        out = re.sub(r"\.tmp\.\d+$", "", tmp)
        raise Refusal(f"{out}: cannot write the checkpoint: {e}; check the directory exists and is writable")


# ------------------------------------------------------------------------------------------ main
def run(a):
    path = a["from"]
    if not path or not a["tmp"]:
        raise Refusal("import_torch.py needs --from FILE.pt and --tmp PATH (concord import passes them)")
    o, meta, optim_path, sp = merge_options(a)
    try:
        obj = read_npz(path) if path.endswith(".npz") else read_pt(path)
    except OSError as e:
        raise Refusal(f"{path}: cannot read: {e.strerror}")
    except Unsupported as e:
        raise Refusal(f"{path}: {e}")
    wrap = []
    state = strip_wrappers(unwrap(obj, path, wrap), wrap)
    mods, concord_state = group_modules(state)
    probe, ds, s = resolve_spec(o, meta, mods, path)
    try:
        layout = ", ".join([match(mods, probe, path)] + wrap)
    except Refusal as e:
        raise Refusal(f"{e}{guess_arch(mods, probe.spec, path)}") from None
    g = finish_spec(o, meta, mods, probe, s, ds, path)
    retarget(mods, g)
    tensors, fb, notes = collect(mods, g, path)
    for name in concord_state:
        if name not in {n.name for n in g.param_layers()}:
            raise Refusal(f"{path}: unknown key 'rule.{name}.state' ({describe(g.spec)} has no layer {name})")
    mean, std, norm_how = normalisation(o, ds, tensors, g.spec.in_c, path)
    tensors["norm.mean"], tensors["norm.std"] = mean, std
    rule = choose_rule(o, meta, fb, concord_state, path)
    meta_opts = cm.rule_opts_parse(meta.get("rule_opts"))
    opts, states, fb_note = rule_state(rule, o, meta_opts, bool(meta.get("rule_opts")), g, tensors, fb, concord_state, path)
    rules = cm.layer_rules(g, rule, opts["last-layer-bp"])
    optim = {}
    if optim_path:
        try:
            optim = read_pt(optim_path)
        except (OSError, Unsupported) as e:
            raise Refusal(f"{optim_path}: cannot read the optimiser state: {e}")
    out = []
    for name, shape, kind in cm.tensors(g, rules):
        if kind == "rule":
            arr = states[name[len("rule."):-len(".state")]]
        elif kind == "optim":
            arr = as_f32(optim[name], name, optim_path) if name in optim else np.zeros(shape, "<f4")
        else:
            arr = tensors[name]
        if tuple(np.shape(arr)) != tuple(shape) and np.size(arr) == math.prod(shape):
            arr = np.reshape(arr, shape)
        if tuple(np.shape(arr)) != tuple(shape):
            raise Refusal(f"{optim_path or path}: '{name}' has shape {list(np.shape(arr))}, expected {list(shape)}")
        out.append((name, shape, arr))
    extras = collections.OrderedDict((k, v) for k, v in meta.items())
    if not meta:
        extras["kind"] = "import"
    if o["dataset"]:
        extras["dataset"] = o["dataset"]
    extras["import_source"] = path
    if a["source_hash"]:
        extras["import_source_hash"] = a["source_hash"]
    extras["import_layout"] = layout
    extras["import_norm"] = norm_how
    extras["import_feedback"] = fb_note or "none"
    if notes:
        extras["import_notes"] = "; ".join(notes)
    rows = meta_rows(g, rule, opts, mean, std, extras)
    same = [k for k in rows if not k.startswith("import_")]
    if meta and len(same) == len(meta) and all(rows[k] == str(v) for k, v in meta.items() if k in rows):
        # a file ckpt_to_torch.py exported, nothing overridden: the same checkpoint comes back, row for row
        rows = collections.OrderedDict((k, str(v)) for k, v in meta.items())
    write_ckpt(a["tmp"], rows, out)
    sp_note = f", side file {sp}" if sp else ""
    print(f"import: {path} ({layout}{sp_note}) -> {describe(g.spec)} {g.spec.in_c}x{g.spec.in_h}x{g.spec.in_w}, "
          f"{g.spec.classes} {'bits' if g.spec.head == 'hash' else 'classes'}, rule {rule}"
          f"{' (' + fb_note + ')' if fb_note else ''}, normalisation from {norm_how}")


def main(argv):
    a = parse_args(argv)
    if a["list_options"]:
        print("\n".join(name for name, _, _ in OPTIONS))
        return 0
    try:
        run(a)
    except Refusal as e:
        print(f"concord: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug, or an input no check foresaw: still one line, with where it happened
        tb = traceback.extract_tb(e.__traceback__)[-1]
        print(f"concord: {a['from']}: the importer failed ({type(e).__name__}: {str(e)[:200]} at "
              f"{os.path.basename(tb.filename)}:{tb.lineno}); please report it with the file", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
