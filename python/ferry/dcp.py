"""ferry.dcp: PyTorch distributed checkpoints (DCP) read straight from ferry.

    import torch.distributed.checkpoint as dcp
    import ferry.dcp
    state = {"model": model.state_dict(), "optim": optimizer.state_dict()}
    dcp.load(state, storage_reader=ferry.dcp.reader("ferry://dr1:7443/llama70b-4200",
                                                     ca="ca.pem", cert="host.pem", key="host.key"))

A DCP checkpoint is a directory of ``.distcp`` data files and a ``.metadata``
file: a pickled ``torch.distributed.checkpoint.metadata.Metadata`` that says,
for every tensor (or chunk of one) and every non-tensor object, which byte
range of which ``.distcp`` file holds it. ``reader()`` restores the snapshot
once (every chunk verified, into host memory) and is a DCP ``StorageReader``
over that memory: DCP's own ``FileSystemReader`` runs unchanged over a
read-only in-memory ``FileSystemBase``, so resharding, partial loads and
stream transforms work as they do from a directory.

The ``.metadata`` pickle is unpickled with an allow-list (the DCP metadata
classes, ``torch.Size``, torch dtypes and layouts, paths): a snapshot cannot
run code when it is read. Tensors are read with ``torch.load(weights_only=True)``
as DCP does.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import posixpath
import warnings
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.distributed.checkpoint as _dcp
from torch.distributed.checkpoint.filesystem import FileSystemBase, FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata

from ferry import _MemoryReader, _ext, _tls_files
from ferry._ext import FerryError

__all__ = ["reader", "Reader", "checkpoint_dirs", "load_tensors"]

PathLike = Union[str, "os.PathLike[str]"]

# The file DCP writes last; its directory is the checkpoint.
METADATA_NAME = ".metadata"
# Modules whose own classes (dataclasses and enums of DCP's metadata) a
# .metadata pickle may name.
_METADATA_MODULES = ("torch.distributed.checkpoint.metadata",)
# Single names from elsewhere that DCP's metadata pickles hold.
_ALLOWED_GLOBALS = {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.distributed.checkpoint.filesystem", "_StoragePrefix"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("torch._utils", "_get_layout"),
    ("collections", "OrderedDict"),
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "Path"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
}
# The first byte of a pickle of protocol 2 or later (pickle.PROTO).
_PICKLE_PROTO_OPCODE = b"\x80"
# The warning DCP gives for a load without a process group: single-process
# is exactly what a restore is.
_NO_PROCESS_GROUP_WARNING = r"torch\.distributed is disabled, unavailable or uninitialized"


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP metadata and refuses any other global (no code runs)."""

    def __init__(self, stream, where: str):
        super().__init__(stream)
        self._where = where

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout)):
            return getattr(torch, name)
        if module in _METADATA_MODULES:
            obj = super().find_class(module, name)
            if isinstance(obj, type) and obj.__module__ == module:
                return obj
        raise FerryError(
            f"{self._where}: refusing to unpickle {module}.{name}: not a type DCP metadata holds"
        )


class _RestoredFiles(FileSystemBase):
    """DCP's file-system interface over a restored snapshot's files, keyed by
    their path in the snapshot ("step-100/__0_0.distcp"). Read-only."""

    def __init__(self, files: Mapping[str, memoryview], location: str):
        self._files = files
        self._location = location

    def _key(self, path) -> str:
        return posixpath.normpath(os.fspath(path)).lstrip("/")

    @contextlib.contextmanager
    def create_stream(self, path, mode: str):
        if "r" not in mode or any(c in mode for c in "wax+"):
            raise FerryError(f"{self._location}: a restored snapshot is read-only (mode {mode!r})")
        key = self._key(path)
        view = self._files.get(key)
        if view is None:
            raise FerryError(f"{self._location}: the snapshot has no file {key!r}")
        stream = _MemoryReader(view)
        try:
            yield stream
        finally:
            stream.close()

    def concat_path(self, path, suffix: str) -> str:
        return posixpath.join(os.fspath(path), suffix)

    def init_path(self, path) -> str:
        return os.fspath(path)

    def exists(self, path) -> bool:
        return self._key(path) in self._files

    def ls(self, path) -> List[str]:
        prefix = self._key(path)
        prefix = "" if prefix == "." else prefix + "/"
        return sorted(p for p in self._files if p.startswith(prefix) and "/" not in p[len(prefix) :])

    def _read_only(self, *_args, **_kwargs):
        raise FerryError(f"{self._location}: a restored snapshot is read-only")

    rename = mkdir = rm_file = _read_only

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        return False


class Reader(FileSystemReader):
    """A DCP StorageReader over one DCP checkpoint of a restored ferry snapshot.

    Made by ``reader()``; holds the restored files (host memory) until it is
    dropped."""

    def __init__(self, files: Mapping[str, memoryview], location: str, checkpoint_dir: str = ""):
        super().__init__(checkpoint_dir or ".")
        self.location = location
        self.checkpoint_dir = checkpoint_dir
        self.fs = _RestoredFiles(files, location)
        self.path = checkpoint_dir or "."

    def _where(self) -> str:
        return self.location + (f" ({self.checkpoint_dir})" if self.checkpoint_dir else "")

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        # FileSystemReader.read_metadata, with the restricted unpickler.
        path = self.fs.concat_path(self.path, METADATA_NAME)
        where = f"{self._where()}: {self.fs._key(path)}"
        with self.fs.create_stream(path, "rb") as stream:
            try:
                metadata = _MetadataUnpickler(stream, where).load()
            except FerryError:
                raise
            except Exception as e:  # a truncated or foreign pickle raises many kinds
                raise FerryError(f"{where}: not DCP metadata: {e}") from e
        if not isinstance(metadata, Metadata):
            raise FerryError(f"{where}: holds a {type(metadata).__name__}, not DCP Metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    @property
    def checkpoint_id(self) -> str:
        return self._where()


def checkpoint_dirs(files: Mapping[str, memoryview]) -> List[str]:
    """The DCP checkpoints among a snapshot's files: each directory ("" for
    the snapshot's top) that holds a .metadata file that is a pickle (DCP
    pickles with protocol 2 or later, which starts with this opcode; another
    tool's .metadata, JSON say, is not a DCP checkpoint), sorted."""
    out = []
    for p, view in files.items():
        if posixpath.basename(p) == METADATA_NAME and bytes(view[:1]) == _PICKLE_PROTO_OPCODE:
            out.append(posixpath.dirname(p))
    return sorted(out)


def _files_of(restoration) -> Dict[str, memoryview]:
    return {f.path: memoryview(f) for f in restoration.files}


def _pick_dir(dirs: List[str], wanted: Optional[str], location: str) -> str:
    if wanted is not None:
        wanted = posixpath.normpath(wanted).strip("/")
        wanted = "" if wanted == "." else wanted
        if wanted not in dirs:
            raise FerryError(
                f"{location}: no DCP checkpoint (a {METADATA_NAME} file) in {wanted or 'the top directory'}; "
                f"found: {', '.join(d or '.' for d in dirs) or 'none'}"
            )
        return wanted
    if not dirs:
        raise FerryError(f"{location}: the snapshot holds no DCP checkpoint (no {METADATA_NAME} file written by DCP)")
    if len(dirs) > 1:
        raise FerryError(
            f"{location}: the snapshot holds {len(dirs)} DCP checkpoints ({', '.join(d or '.' for d in dirs)}); "
            "pass path= to pick one"
        )
    return dirs[0]


def reader(
    path_or_url: PathLike,
    *,
    path: Optional[str] = None,
    ca: Optional[PathLike] = None,
    cert: Optional[PathLike] = None,
    key: Optional[PathLike] = None,
    streams: int = 4,
    engine: str = "auto",
) -> Reader:
    """A torch.distributed.checkpoint StorageReader over a DCP checkpoint in a
    ferry snapshot, for ``dcp.load(state_dict, storage_reader=...)``.

    path_or_url: "PATH.ferry", "store:DIR/NAMESPACE/SNAPSHOT" or
      "ferry://HOST:PORT/SNAPSHOT" (certificates as for ferry.load).
    path: the DCP directory inside the snapshot, when it holds several
      (default: its only one).

    The snapshot is restored (every chunk verified) into host memory here;
    FerryError or CorruptionError says why when it cannot be.
    """
    location = os.fspath(path_or_url)
    ca_file, cert_file, key_file = _tls_files(location, ca, cert, key)
    restoration = _ext.restore(location, "cpu", ca_file, cert_file, key_file, streams, engine)
    files = _files_of(restoration)
    return Reader(files, location, _pick_dir(checkpoint_dirs(files), path, location))


def load_tensors(
    files: Mapping[str, memoryview], location: str, checkpoint_dir: str
) -> Tuple[Dict[str, Any], List[str]]:
    """Every tensor of one DCP checkpoint, by its flattened name
    ("model.layers.0.attn.q_proj.weight", "optim.state.0.exp_avg"), read
    through Reader on the host; and the snapshot paths the checkpoint
    consists of (its .metadata and every data file the metadata names).
    Non-tensor entries (param_groups' lr, ...) are left out: dcp.load with
    reader() returns them."""
    r = Reader(files, location, checkpoint_dir)
    metadata = r.read_metadata()
    paths = {posixpath.join(checkpoint_dir, METADATA_NAME)}
    for info in (metadata.storage_data or {}).values():
        rel = getattr(info, "relative_path", None)
        if rel:
            paths.add(posixpath.normpath(posixpath.join(checkpoint_dir, rel)))
    state: Dict[str, Any] = {}
    for name, md in metadata.state_dict_metadata.items():
        if isinstance(md, TensorStorageMetadata):
            state[name] = torch.empty(md.size, dtype=md.properties.dtype)
    if state:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NO_PROCESS_GROUP_WARNING)
            try:
                _dcp.load(state, storage_reader=r, no_dist=True)
            except FerryError:
                raise
            except Exception as e:  # DCP wraps reader failures in its own exception types
                raise FerryError(f"{r.checkpoint_id}: reading the DCP checkpoint failed: {e}") from e
    return state, sorted(paths)
