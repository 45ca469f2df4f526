"""ferry: restore a checkpoint straight into PyTorch tensors.

    import ferry
    state = ferry.load("ckpt.ferry")                           # a .ferry archive, on the host
    state = ferry.load("ckpt.ferry", device="cuda:0")          # into GPU memory
    state = ferry.load("store:/srv/ferry/host-a/SNAP")         # a receiver's local store
    state = ferry.load("ferry://dr.example:7443/SNAP",         # a DR receiver over mTLS
                       ca="ca.pem", cert="host.pem", key="host.key")
    dcp.load(state_dict, storage_reader=ferry.dcp.reader("ferry://dr.example:7443/SNAP", ...))

Compressed frames are read (in parallel), decoded and verified against their
chunk ids by ferry's native code (ferry._ext, over replication/device_restore.h)
with the GIL released, straight into device memory when a GPU engine is
usable. safetensors tensors are handed to PyTorch through DLPack without a
copy: each tensor keeps its file's allocation alive, which frees itself when
the last tensor of the file goes. torch.save checkpoints (a zip with
data.pkl) in the snapshot are loaded with torch.load(weights_only=True) and
their tensors merged in; PyTorch distributed checkpoints (a .metadata file
and .distcp data files) are read through ferry.dcp's StorageReader. Damaged
data raises CorruptionError naming the chunk, file and offset; nothing is
handed over unverified.
"""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any, Dict, Iterator, Optional, Tuple, Union

from ferry import _ext
from ferry._ext import CorruptionError, FerryError

__all__ = ["load", "restore_files", "dcp", "FerryError", "CorruptionError", "__version__"]

# The version of the ferry build this module belongs to (CMake's project
# version, the same as `ferry --version`).
__version__: str = _ext.__version__

PathLike = Union[str, "os.PathLike[str]"]

# A torch.save checkpoint is a zip archive whose entries sit under one folder
# with the pickled object in <folder>/data.pkl.
_ZIP_MAGIC = b"PK\x03\x04"
_TORCH_PICKLE = "data.pkl"
_SAFETENSORS_SUFFIX = ".safetensors"
# A safetensors file starts with its JSON header's length (u64, little endian).
_SAFETENSORS_LEN_BYTES = 8
# safetensors dtype names -> torch dtype attribute names.
_SAFETENSORS_TORCH_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "I32": "int32", "U32": "uint32", "I64": "int64", "U64": "uint64",
    "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
    "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}


def _tls_files(location: str, ca, cert, key) -> Tuple[str, str, str]:
    """The mTLS files for a ferry:// location (kwargs, else FERRY_CA/CERT/KEY)."""
    if not location.startswith("ferry://"):
        return "", "", ""
    given = {
        "ca": ca or os.environ.get("FERRY_CA"),
        "cert": cert or os.environ.get("FERRY_CERT"),
        "key": key or os.environ.get("FERRY_KEY"),
    }
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ValueError(
            f"{location} is a DR receiver reached over mutual TLS: pass "
            + ", ".join(f"{m}=" for m in missing)
            + " or set "
            + ", ".join(f"FERRY_{m.upper()}" for m in missing)
        )
    return tuple(os.fspath(given[n]) for n in ("ca", "cert", "key"))  # type: ignore[return-value]


def _torch():
    import torch  # imported late: ferry.restore_files works without torch

    return torch


def _restore_device(device) -> Tuple[str, Optional[str]]:
    """(where ferry restores to, where the tensors must end up).

    device=None: the first GPU when PyTorch can use one, else the host. A GPU asked for by name must be usable by PyTorch: there is no
    silent fallback to the host. When PyTorch can use it but ferry cannot
    (a build without the GPU engine), ferry restores on the host and PyTorch
    copies, and a warning says why.
    """
    torch = _torch()
    if device is None:
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    name = _ext.normalize_device(str(device))
    if name == "cpu":
        return "cpu", None
    index = int(name.split(":")[1])
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            why = f"this PyTorch ({torch.__version__}) is built without CUDA"
        else:
            why = "PyTorch sees no CUDA device (torch.cuda.is_available() is False)"
        ferry_why = _ext.gpu_unavailable_reason(index)
        if ferry_why:
            why += f"; ferry: {ferry_why}"
        raise RuntimeError(f"ferry.load: {name} asked for, but no GPU is usable here: {why}")
    if index >= torch.cuda.device_count():
        raise RuntimeError(
            f"ferry.load: {name} asked for, but PyTorch sees {torch.cuda.device_count()} GPU(s)"
        )
    ferry_why = _ext.gpu_unavailable_reason(index)
    if ferry_why:
        warnings.warn(
            f"ferry.load: ferry cannot use {name} ({ferry_why}); "
            "restoring on the host and copying with PyTorch",
            RuntimeWarning,
            stacklevel=3,
        )
        return "cpu", name
    return name, None


def _tensor_of(entry):
    """A torch.Tensor over a restored tensor's memory, through DLPack (no copy)."""
    torch = _torch()
    tensor = torch.utils.dlpack.from_dlpack(entry.to_dlpack())
    view = entry.view_dtype
    if view:
        torch_dtype = getattr(torch, view, None)
        if torch_dtype is None:
            raise FerryError(
                f"tensor {entry.name!r} in {entry.file} has dtype {entry.dtype}, "
                f"which this PyTorch ({torch.__version__}) lacks (torch.{view})"
            )
        tensor = tensor.view(torch_dtype)
    return tensor


class _MemoryReader(io.RawIOBase):
    """A seekable, read-only file over restored memory, so that zipfile and
    torch.load read a checkpoint in place instead of from a copy of it."""

    def __init__(self, view: memoryview):
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), len(self._view) - self._pos))
        memoryview(buffer).cast("B")[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"seek to {base + offset}, before the start")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


def _is_torch_save(data: memoryview) -> Optional[_MemoryReader]:
    """A reader over the bytes when they are a torch.save zip checkpoint, else None."""
    if bytes(data[: len(_ZIP_MAGIC)]) != _ZIP_MAGIC:
        return None
    stream = _MemoryReader(data)
    try:
        with zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return None
    if not any(n == _TORCH_PICKLE or n.endswith("/" + _TORCH_PICKLE) for n in names):
        return None
    stream.seek(0)
    return stream


def _safetensors_fallback(f, device: str) -> Dict[str, Any]:
    """The tensors of a safetensors file that came back as plain bytes, as
    views of the restored memory (no copy on the host)."""
    torch = _torch()
    view = memoryview(f)
    where = f"{f.path} (safetensors)"
    if len(view) < _SAFETENSORS_LEN_BYTES:
        raise FerryError(f"{where}: {len(view)} bytes, shorter than its header length")
    (header_len,) = struct.unpack("<Q", view[:_SAFETENSORS_LEN_BYTES])
    base = _SAFETENSORS_LEN_BYTES + header_len
    if base > len(view):
        raise FerryError(f"{where}: header of {header_len} bytes runs past the file's {len(view)}")
    try:
        header = json.loads(bytes(view[_SAFETENSORS_LEN_BYTES:base]))
    except ValueError as e:
        raise FerryError(f"{where}: header is not JSON: {e}") from e
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype_name = _SAFETENSORS_TORCH_DTYPES.get(info.get("dtype"))
        dtype = getattr(torch, dtype_name, None) if dtype_name else None
        if dtype is None:
            raise FerryError(
                f"{where}: tensor {name!r} has dtype {info.get('dtype')}, "
                f"which this PyTorch ({torch.__version__}) cannot represent"
            )
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
        numel = 1
        for d in shape:
            numel *= d
        element_bytes = torch.empty(0, dtype=dtype).element_size()
        if not (0 <= begin <= end <= len(view) - base) or end - begin != numel * element_bytes:
            raise FerryError(f"{where}: tensor {name!r} has data_offsets [{begin}, {end}] "
                             f"that do not hold {shape} x {info['dtype']}")
        if end == begin:
            tensor = torch.empty(shape, dtype=dtype)
        else:
            raw = torch.frombuffer(view[base + begin : base + end], dtype=torch.uint8)
            tensor = raw.view(dtype).reshape(shape)
        out[name] = tensor if device == "cpu" else tensor.to(device)
    return out


def __getattr__(name: str):
    # ferry.dcp imports torch.distributed.checkpoint, so it is imported on
    # first use: ferry.restore_files works without torch.
    if name == "dcp":
        import importlib

        return importlib.import_module("ferry.dcp")
    raise AttributeError(f"module 'ferry' has no attribute {name!r}")


def _dcp_tensors(files: Dict[str, Any], location: str, map_location: str):
    """(tensors, paths read) of every DCP checkpoint among the restored
    files ({path: RestoredFile}): a .metadata file and the .distcp files it
    names."""
    if not any(os.path.basename(path) == ".metadata" for path in files):
        return {}, set()
    from ferry import dcp

    views = {path: memoryview(f) for path, f in files.items()}
    out: Dict[str, Tuple[Any, str]] = {}
    used = set()
    for d in dcp.checkpoint_dirs(views):
        where = os.path.join(d, ".metadata")
        tensors, paths = dcp.load_tensors(views, location, d)
        for name, tensor in tensors.items():
            if name in out:
                raise FerryError(f"tensor {name!r} is in both {out[name][1]} and {where}")
            out[name] = (tensor if map_location == "cpu" else tensor.to(map_location), where)
        used.update(paths)
    return out, used


def _flatten(obj: Any, prefix: str) -> Iterator[Tuple[str, Any]]:
    """The tensors of a loaded object, named by their dotted key path."""
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))


def _put(out: Dict[str, Any], origin: Dict[str, str], name: str, tensor, file: str) -> None:
    if name in out:
        raise FerryError(f"tensor {name!r} is in both {origin[name]} and {file}")
    out[name] = tensor
    origin[name] = file


def tensors_of(
    restoration, device: str, copy_to: Optional[str] = None, location: str = "the snapshot"
) -> Dict[str, Any]:
    """The tensors of an _ext.restore() result: safetensors tensors through
    DLPack, the tensors of DCP checkpoints, then those of torch.save
    checkpoints. Public for tests."""
    torch = _torch()
    out: Dict[str, Any] = {}
    origin: Dict[str, str] = {}
    for entry in restoration.tensors:
        tensor = _tensor_of(entry)
        if copy_to is not None:
            tensor = tensor.to(copy_to)
        _put(out, origin, entry.name, tensor, entry.file)
    map_location = copy_to or device
    files = {f.path: f for f in restoration.files}
    dcp_tensors, dcp_files = _dcp_tensors(files, location, map_location)
    for name, (tensor, where) in dcp_tensors.items():
        _put(out, origin, name, tensor, where)
    for f in restoration.files:
        if f.path in dcp_files:
            continue
        if f.path.endswith(_SAFETENSORS_SUFFIX):
            # A safetensors file whose header ferry's packer did not take as a
            # tensor layout (a dtype it does not know, such as F8_E8M0) was
            # packed as plain bytes: its header is read here, rather than its
            # tensors going missing.
            for name, tensor in _safetensors_fallback(f, map_location).items():
                _put(out, origin, name, tensor, f.path)
            continue
        stream = _is_torch_save(memoryview(f))
        if stream is None:
            continue
        try:
            obj = torch.load(stream, map_location=map_location, weights_only=True)
        except Exception as e:  # torch raises many kinds; name the file
            raise FerryError(f"{f.path}: torch.load failed: {e}") from e
        for name, tensor in _flatten(obj, ""):
            _put(out, origin, name or f.path, tensor, f.path)
    return out


def load(
    path_or_url: PathLike,
    device: Union[str, Any, None] = "cpu",
    *,
    ca: Optional[PathLike] = None,
    cert: Optional[PathLike] = None,
    key: Optional[PathLike] = None,
    streams: int = 4,
    engine: str = "auto",
) -> Dict[str, Any]:
    """Restores a snapshot and returns its tensors by name: safetensors
    tensors by their names, torch.save checkpoints' by dotted key paths, and
    a DCP checkpoint's by its flattened names ("model.0.weight",
    "optim.state.0.exp_avg"; its non-tensor entries, such as param_groups,
    through dcp.load with ferry.dcp.reader instead).

    path_or_url: "PATH.ferry", "store:DIR/NAMESPACE/SNAPSHOT",
      "s3://BUCKET[/PREFIX]/NAMESPACE/SNAPSHOT" (a bucket read straight, as
      `ferry push --to=s3://BUCKET/PREFIX --namespace=NAMESPACE` wrote it;
      credentials from AWS_ACCESS_KEY_ID and the other AWS_* variables or
      ~/.aws) or "ferry://HOST:PORT/SNAPSHOT" (certificates from ca/cert/key
      or the FERRY_CA, FERRY_CERT and FERRY_KEY environment variables).
    device: "cpu" (the default: works on every host), "cuda:N" (raises
      RuntimeError with the reason when no GPU is usable), a torch.device,
      or None for the first GPU when PyTorch can use one, else the host.
    streams: parallel connections to a DR receiver, or for a store (s3://
      above all) the frames fetched at once ahead of decoding (GETs in
      flight). engine: the codec engine ("auto", "cpu", "gpu").

    Raises CorruptionError (naming chunk, file and offset) when any restored
    byte fails verification, FerryError for other failures.
    """
    location = os.fspath(path_or_url)
    ca_file, cert_file, key_file = _tls_files(location, ca, cert, key)
    restore_to, copy_to = _restore_device(device)
    restoration = _ext.restore(location, restore_to, ca_file, cert_file, key_file, streams, engine)
    return tensors_of(restoration, restore_to, copy_to, location)


def restore_files(
    path_or_url: PathLike,
    *,
    ca: Optional[PathLike] = None,
    cert: Optional[PathLike] = None,
    key: Optional[PathLike] = None,
    streams: int = 4,
    engine: str = "auto",
) -> Dict[str, memoryview]:
    """The snapshot's files that have no tensor layout (JSON, tokenizer files,
    torch.save checkpoints), whole, by relative path: writable memoryviews
    over the restored host memory (no copy), verified like load()'s tensors.
    safetensors files come back as tensors through load() instead."""
    location = os.fspath(path_or_url)
    ca_file, cert_file, key_file = _tls_files(location, ca, cert, key)
    restoration = _ext.restore(location, "cpu", ca_file, cert_file, key_file, streams, engine)
    return {f.path: memoryview(f) for f in restoration.files}
