"""pt_reader.py -- read a PyTorch checkpoint (`torch.save`) into numpy arrays without torch.

A `.pt` file written by torch >= 1.6 is a zip archive: `<dir>/data.pkl` (a pickle whose tensors refer to
storages by key), `<dir>/data/<key>` (each storage's raw little-endian bytes) and `<dir>/version`
(optionally `<dir>/byteorder`). This reader unpickles data.pkl with a restricted Unpickler that knows
only what a state_dict holds -- tensors (`torch._utils._rebuild_tensor_v2`), parameters, storages,
`collections.OrderedDict` and plain containers -- and refuses every other global, so a malicious pickle
cannot run code. Anything it cannot read (the legacy pre-1.6 format, other objects) is handed to
torch.load(weights_only=True) when torch is installed; when it is not, the error names the fix.

    state = read_pt("model.pt")   # {key: numpy array} (nested dicts kept as dicts)
"""
import collections
import pickle
import zipfile

import numpy as np

# torch storage classes -> numpy dtypes (little-endian)
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class Unsupported(Exception):
    """The file holds something this reader does not handle (torch.load may)."""


class _Storage:
    def __init__(self, dtype, key):
        self.dtype, self.key = dtype, key


def _array(storage, offset, size, stride, raw):
    if storage.dtype == "bf16":  # bfloat16: the high half of a float32
        u = np.frombuffer(raw[storage.key], "<u2").astype(np.uint32) << 16
        flat = u.view("<f4")
    else:
        flat = np.frombuffer(raw[storage.key], storage.dtype)
    size, stride = tuple(size), tuple(stride)
    if not size:
        return flat[offset:offset + 1].reshape(()).copy()
    if any(s == 0 for s in size):
        return np.zeros(size, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= flat.size:
        raise Unsupported("a tensor points outside its storage")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride])
    return np.array(view)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return ("tensor", storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    return data


class _Unpickler(pickle.Unpickler):
    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise Unsupported(f"the pickle refers to {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and pid[1] in STORAGE_DTYPES):
            raise Unsupported(f"unknown storage reference {pid!r:.60}")
        return _Storage(STORAGE_DTYPES[pid[1]], str(pid[2]))


def _materialise(obj, raw):
    if isinstance(obj, tuple) and len(obj) == 5 and obj[0] == "tensor":
        return _array(obj[1], obj[2], obj[3], obj[4], raw)
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v, raw)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, raw) for v in obj)
    return obj


def _read_zip(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise Unsupported("no data.pkl in the archive")
        root = pkl[0][: -len("data.pkl")]
        big = f"{root}byteorder" in names and z.read(f"{root}byteorder").strip() == b"big"
        if big:
            raise Unsupported("a big-endian archive")
        raw = {n[len(root) + 5:]: z.read(n) for n in names if n.startswith(f"{root}data/")}
        obj = _Unpickler(z.open(pkl[0])).load()
    return _materialise(obj, raw)


def _read_with_torch(path, why):
    try:
        import torch
    except ImportError:
        raise Unsupported(f"{why}; reading it needs torch: apt-get install python3-torch "
                          f"(or re-save it with torch >= 1.6: torch.save(model.state_dict(), 'model.pt'))") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's own message, on one line
        first = str(e).split(". ")[0].splitlines()[0][:120]
        raise Unsupported(f"{why}, and torch.load(weights_only=True) refused it too ({first}); "
                          f"save the bare state_dict: torch.save(model.state_dict(), 'model.pt')") from None

    def conv(o):
        if isinstance(o, torch.Tensor):
            o = o.detach().cpu()
            return (o.float() if o.dtype == torch.bfloat16 else o).numpy().copy()
        if isinstance(o, dict):
            return collections.OrderedDict((k, conv(v)) for k, v in o.items())
        if isinstance(o, (list, tuple)):
            return type(o)(conv(v) for v in o)
        return o
    return conv(obj)


def read_pt(path):
    """The unpickled object with every tensor as a numpy array. Raises OSError (unreadable) or
    Unsupported (one-line reason and fix)."""
    with open(path, "rb"):
        pass
    if zipfile.is_zipfile(path):
        try:
            return _read_zip(path)
        except Unsupported as e:
            return _read_with_torch(path, f"it holds more than tensors ({e})")
        except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
            raise Unsupported(f"not a readable PyTorch file (damaged archive: {e})") from None
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:1] != b"\x80":
        raise Unsupported("not a PyTorch file (neither a torch.save zip archive nor a pickle)")
    return _read_with_torch(path, "it is in the legacy (pre-1.6) torch.save format")
