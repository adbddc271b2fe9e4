r"""Zarr stores shared by every stage: templates, chunk-aligned region writes, completeness.

Every store ``lemmse`` writes is a Zarr group (Zarr format 2, consolidated metadata) that
``xr.open_zarr(path)`` opens as a labelled :class:`xarray.Dataset` with named dimensions and
provenance in ``attrs``; ``.to_dataframe()`` then gives a tidy table with no custom code.
Format 2 is chosen because its metadata (dimension names in ``_ARRAY_DIMENSIONS``, consolidated
``.zmetadata``, fixed-width string coordinates) is stable and read by every xarray/zarr version,
where Zarr 3 still flags consolidated metadata and string dtypes as unstable.

Two ways to build a store
-------------------------

**Whole store at once** (a prepared data set, a small table)::

    with atomic_store(path) as tmp:          # tmp = a hidden sibling of path
        ds.to_zarr(tmp, ...)   # or save_dataset(ds, tmp, chunks=...)
        mark_complete(tmp)
    # only now does ``path`` exist; a failure above leaves no trace at ``path``

:func:`save_dataset` does all three steps.

**Template, then many independent region writes** (measurements, estimator cubes)::

    create_template(path, coords={...}, variables={"y": VariableSpec(dims, chunks)}, attrs={...})
    write_region(path, {"y": block}, region={"image": slice(0, 64), "sigma": slice(2, 3)})  # any job
    ...
    mark_complete(path)                       # once, after every region is written

The template holds only metadata: every float variable is filled with NaN, which therefore means
"not computed yet" (chunks never written are not stored at all). Each region must cover whole
chunks (a region ending at the array's end may cover a partial last chunk), so concurrent jobs
never write the same chunk; :func:`write_region` refuses anything else. ``attrs["complete"]`` is
``False`` until :func:`mark_complete` sets it (and re-consolidates the metadata) as the very last
step; readers call :func:`open_dataset` (or :func:`require_complete`) which refuse an incomplete
store.

Concurrent writers: any number of processes may call :func:`write_region` on one store at once
as long as their regions are distinct; alignment makes their chunk sets disjoint, and Zarr
writes each chunk file to a temporary name and renames it into place, so a reader (or a writer
of a neighbouring chunk) never sees half a chunk. Writers never touch the metadata files.

Failed writes (disk full, read-only file system, quota, a file where a folder should be) raise
:class:`StoreWriteError` naming the path and the reason; :func:`require_writable` checks a
folder up front, before long work. Nothing half-written looks complete: chunk and metadata files
are renamed into place whole, :func:`atomic_store` and :func:`atomic_write_text` build under a
temporary name, and :func:`is_complete` needs ``complete`` in both the group attributes and the
consolidated metadata, which :func:`mark_complete` writes last.

API: :class:`VariableSpec`, :func:`create_template`, :func:`write_region`, :func:`mark_complete`,
:func:`is_complete`, :func:`require_complete`, :func:`open_dataset`, :func:`atomic_store`,
:func:`save_dataset`, :func:`chunk_slices`, :func:`atomic_write_text`, :func:`require_writable`,
:class:`StoreWriteError`.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import xarray as xr
import zarr

from lemmse.errors import LemmseInputError

log = logging.getLogger(__name__)

#: Zarr on-disk format of every store (see the module docstring for why 2).
ZARR_FORMAT = 2
#: Root attribute set to ``True`` by :func:`mark_complete`, last.
COMPLETE_ATTR = "complete"


@dataclass(frozen=True)
class VariableSpec:
    """One data variable of a template: named ``dims``, explicit ``chunks`` (one per dim).

    Float variables are filled with NaN (= not computed); integer or boolean ones need an
    explicit ``fill_value`` (e.g. ``-1``).
    """

    dims: tuple[str, ...]
    chunks: tuple[int, ...]
    dtype: str = "float32"
    fill_value: Any = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


def _as_path(path: str | os.PathLike) -> Path:
    return Path(path)


class StoreWriteError(OSError):
    """Writing a result failed; the message names the path and why (``errno`` is kept)."""


_REASONS = {
    errno.ENOSPC: "no space left on the device (the disk is full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a component of the path is a file, not a folder",
    errno.EEXIST: "a file is in the way",
}


def _write_error(path: Path, what: str, err: OSError) -> StoreWriteError:
    reason = _REASONS.get(err.errno, err.strerror or str(err))
    culprit = f" ({err.filename})" if err.filename and str(err.filename) != str(path) else ""
    return StoreWriteError(err.errno, f"cannot write {what} {path}: {reason}{culprit}; "
                                      "nothing written there is marked complete")


@contextmanager
def writing(path: Path, what: str) -> Iterator[None]:
    """Turn any :class:`OSError` raised inside into a :class:`StoreWriteError` naming ``path``."""
    try:
        yield
    except StoreWriteError:
        raise
    except OSError as err:
        _remove_partial_files(Path(path))
        raise _write_error(path, what, err) from err


def _remove_partial_files(path: Path, settle: float = 0.05, patience: float = 2.0) -> None:
    """Drop the temporary ``*.partial`` files an interrupted Zarr write leaves in a store (a full
    disk can stop it between writing the temporary file and renaming it into place).

    Zarr writes a region's chunks concurrently: when one fails, the error reaches us while sibling
    writes may still be creating their temporary files. So the sweep repeats, ``settle`` seconds
    apart, until two in a row find nothing left (at most ``patience`` seconds).
    """
    if not path.is_dir():
        return
    deadline, quiet = time.monotonic() + patience, 0
    while quiet < 2 and time.monotonic() < deadline:
        leftovers = list(path.rglob("*.partial"))
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        quiet = 0 if leftovers else quiet + 1
        time.sleep(settle)


def require_writable(folder: str | os.PathLike, what: str = "results into") -> None:
    """Raise :class:`StoreWriteError` now if ``folder`` (a folder or a file to create) cannot be written.

    Checks, without writing, ``folder`` or its nearest existing ancestor: it must be a folder on
    a file system mounted read-write. (Permission bits are not checked: root ignores them, and a denied write
    still fails later with a :class:`StoreWriteError`.)
    """
    folder = _as_path(folder).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise StoreWriteError(errno.ENOTDIR, f"cannot write {what} {folder}: {existing} is a file, not a folder")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise StoreWriteError(errno.EROFS, f"cannot write {what} {folder}: {existing} is on a read-only file system")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (temporary sibling, fsync, rename).

    For marker files: a marker that exists is complete. Raises :class:`StoreWriteError`.
    """
    path = _as_path(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    with writing(path, "file"):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def create_template(path: str | os.PathLike, *, variables: Mapping[str, VariableSpec],
                    coords: Mapping[str, Any] | None = None, sizes: Mapping[str, int] | None = None,
                    attrs: Mapping[str, Any] | None = None, overwrite: bool = False) -> None:
    """Create an empty store at ``path``: coordinates and metadata only, data all "not computed".

    ``coords`` maps a dimension name to its 1-D coordinate values (the dimension's size is their
    count); ``sizes`` gives the size of dimensions without a coordinate. ``attrs`` must be
    JSON-serialisable; ``attrs["complete"]`` is set to ``False``. Refuses an existing ``path``
    unless ``overwrite``. Nothing is allocated in memory but the coordinates.
    """
    path = _as_path(path)
    coords = dict(coords or {})
    dim_sizes = {name: len(np.asarray(values)) for name, values in coords.items()}
    for name, size in (sizes or {}).items():
        if name in dim_sizes and dim_sizes[name] != size:
            raise LemmseInputError(f"dimension {name!r}: sizes gives {size} but its coordinate has {dim_sizes[name]} values")
        dim_sizes[name] = int(size)
    for var, spec in variables.items():
        if len(spec.dims) != len(spec.chunks):
            raise LemmseInputError(f"variable {var!r}: {len(spec.dims)} dims {spec.dims} but {len(spec.chunks)} chunks {spec.chunks}")
        for dim, chunk in zip(spec.dims, spec.chunks):
            if dim not in dim_sizes:
                raise LemmseInputError(f"variable {var!r}: dimension {dim!r} has neither a coordinate nor a size")
            if int(chunk) < 1:
                raise LemmseInputError(f"variable {var!r}: chunk {chunk} along {dim!r} must be >= 1")
    if path.exists() and not overwrite:
        raise LemmseInputError(f"store {path} already exists; remove it or pass overwrite=True")
    require_writable(path, "store")
    with writing(path, "store"):
        _write_template(path, variables, coords, dim_sizes, attrs)
    log.debug("created template %s with %s", path, ", ".join(variables))


def _write_template(path: Path, variables: Mapping[str, VariableSpec], coords: Mapping[str, Any],
                    dim_sizes: Mapping[str, int], attrs: Mapping[str, Any] | None) -> None:
    if path.exists():
        shutil.rmtree(path)
    root_attrs = dict(attrs or {})
    root_attrs[COMPLETE_ATTR] = False
    xr.Dataset(coords={name: (name, np.asarray(values)) for name, values in coords.items()},
               attrs=root_attrs).to_zarr(path, mode="w", zarr_format=ZARR_FORMAT, consolidated=False)
    group = zarr.open_group(path, mode="r+", zarr_format=ZARR_FORMAT)
    for var, spec in variables.items():
        dtype = np.dtype(spec.dtype)
        fill = spec.fill_value
        if fill is None:
            if not np.issubdtype(dtype, np.floating):
                raise LemmseInputError(f"variable {var!r} of dtype {dtype} needs an explicit fill_value")
            fill = np.nan
        shape = tuple(dim_sizes[d] for d in spec.dims)
        chunks = tuple(min(int(c), max(s, 1)) for c, s in zip(spec.chunks, shape))
        group.create_array(var, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                           attributes={**dict(spec.attrs), "_ARRAY_DIMENSIONS": list(spec.dims)})
    zarr.consolidate_metadata(path, zarr_format=ZARR_FORMAT)


def _check_aligned(var: str, dims: tuple[str, ...], shape: tuple[int, ...], chunks: tuple[int, ...],
                   region: Mapping[str, slice]) -> tuple[slice, ...]:
    index = []
    for dim, size, chunk in zip(dims, shape, chunks):
        sl = region.get(dim, slice(None))
        start, stop, step = sl.indices(size)
        if step != 1 or stop <= start:
            raise LemmseInputError(f"region {dim}={sl} of {var!r} must be a non-empty slice with step 1 within 0..{size}")
        if start % chunk or (stop % chunk and stop != size):
            raise LemmseInputError(
                f"region {dim}={start}:{stop} of {var!r} is not aligned to its chunks of {chunk} along {dim!r} "
                f"(size {size}); start and stop must be multiples of {chunk} (stop may be {size})")
        index.append(slice(start, stop))
    return tuple(index)


def write_region(path: str | os.PathLike, data: Mapping[str, Any], region: Mapping[str, slice]) -> None:
    """Write ``data[var]`` into the chunk-aligned ``region`` (``{dim: slice}``) of each variable.

    Each array's shape must be the region's extent along the variable's dims (the full extent
    along dims not in ``region``); ``xarray.DataArray`` values are taken in the variable's dim
    order. Every check runs before the first byte is written. Raises
    :class:`~lemmse.errors.LemmseInputError` for an unknown variable or dimension, a misaligned
    region or a wrong shape, :class:`StoreWriteError` when the disk refuses a chunk (chunks
    written before it stay whole; the region must then be written again).
    """
    path = _as_path(path)
    if not (path / ".zgroup").exists():
        raise LemmseInputError(f"store {path} does not exist (create its template first)")
    group = zarr.open_group(path, mode="r+", zarr_format=ZARR_FORMAT)
    plan = []
    for var, values in data.items():
        if var not in group:
            raise LemmseInputError(f"store {path} has no variable {var!r}")
        arr = group[var]
        dims = tuple(arr.attrs["_ARRAY_DIMENSIONS"])
        unknown = set(region) - set(dims)
        if unknown:
            raise LemmseInputError(f"region names dimension(s) {sorted(unknown)} that {var!r} {dims} does not have")
        if isinstance(values, xr.DataArray):
            values = values.transpose(*dims).values
        values = np.asarray(values)
        index = _check_aligned(var, dims, arr.shape, arr.chunks, region)
        expected = tuple(s.stop - s.start for s in index)
        if values.shape != expected:
            raise LemmseInputError(f"data for {var!r} has shape {values.shape}, region {dict(region)} needs {expected}")
        plan.append((arr, index, values.astype(arr.dtype, copy=False)))
    require_writable(path, "region of store")
    with writing(path, "region of store"):
        for arr, index, values in plan:
            arr[index] = values


def chunk_slices(size: int, chunk: int, block: int | None = None) -> list[slice]:
    """Split ``range(size)`` into chunk-aligned slices of ``block`` elements (a multiple of ``chunk``)."""
    block = chunk if block is None else block
    if block < 1 or block % chunk:
        raise LemmseInputError(f"block {block} must be a positive multiple of the chunk size {chunk}")
    return [slice(start, min(start + block, size)) for start in range(0, size, block)]


def mark_complete(path: str | os.PathLike, **attrs: Any) -> None:
    """Set ``attrs["complete"] = True`` (plus any ``attrs``) and consolidate metadata, as the last step."""
    path = _as_path(path)
    require_writable(path, "completion mark of store")
    with writing(path, "completion mark of store"):
        # without consolidated metadata, so that setting attrs rewrites only .zattrs
        group = zarr.open_group(path, mode="r+", zarr_format=ZARR_FORMAT, use_consolidated=False)
        if attrs:
            group.attrs.update(attrs)
        group.attrs[COMPLETE_ATTR] = True
        # last: until these consolidated metadata land (whole, renamed into place), the store
        # is not complete for is_complete, even though .zattrs already says so
        zarr.consolidate_metadata(path, zarr_format=ZARR_FORMAT)


def is_complete(path: str | os.PathLike) -> bool:
    """``True`` when ``path`` is a store whose ``complete`` attr is set, both in the group's
    attributes and in its consolidated metadata (read from disk, not cached)."""
    path = _as_path(path)
    if not (path / ".zgroup").exists():
        return False
    try:
        group = zarr.open_group(path, mode="r", zarr_format=ZARR_FORMAT, use_consolidated=False)
        consolidated = json.loads((path / ".zmetadata").read_text())["metadata"][".zattrs"]
    except Exception:  # missing or unreadable metadata: not complete
        return False
    return group.attrs.get(COMPLETE_ATTR) is True and consolidated.get(COMPLETE_ATTR) is True


def require_complete(path: str | os.PathLike) -> None:
    """Raise :class:`~lemmse.errors.LemmseInputError` naming ``path`` unless it is a complete store."""
    path = _as_path(path)
    if not path.exists():
        raise LemmseInputError(f"store {path} does not exist")
    if not is_complete(path):
        raise LemmseInputError(f"store {path} is not complete (still being written, or a failed run left it)")


def open_dataset(path: str | os.PathLike, *, complete: bool = True) -> xr.Dataset:
    """Open ``path`` lazily as an :class:`xarray.Dataset` (refusing an incomplete store if ``complete``)."""
    path = _as_path(path)
    if complete:
        require_complete(path)
    elif not path.exists():
        raise LemmseInputError(f"store {path} does not exist")
    return xr.open_zarr(path, consolidated=True, zarr_format=ZARR_FORMAT)


@contextmanager
def atomic_store(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``target``; on success rename it to ``target``.

    The temporary name is a hidden sibling (``.{name}.tmp-<random>``) on the same file system, so
    the final step is a rename. An existing ``target`` is replaced only after the new store is
    fully built (moved aside, the new one renamed in, the old one deleted); with
    ``overwrite=False`` an existing target is refused up front. On any exception the temporary
    directory is deleted and ``target`` is left as it was.
    """
    target = _as_path(target)
    if target.exists() and not overwrite:
        raise LemmseInputError(f"{target} already exists; refusing to overwrite it")
    require_writable(target, "store")
    with writing(target, "store"):
        target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    try:
        with writing(target, "store"):
            yield tmp
            old = None
            if target.exists():
                old = target.parent / f".{target.name}.old-{tag}"
                os.replace(target, old)
            os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_dataset(ds: xr.Dataset, path: str | os.PathLike, *, chunks: Mapping[str, tuple[int, ...]] | None = None,
                 overwrite: bool = True) -> None:
    """Write an in-memory ``ds`` to ``path`` atomically, with explicit ``chunks`` per variable, marked complete."""
    encoding = {name: {"chunks": tuple(min(c, s) for c, s in zip(ch, ds[name].shape))}
                for name, ch in (chunks or {}).items()}
    ds = ds.copy()
    ds.attrs = {**ds.attrs, COMPLETE_ATTR: False}
    with atomic_store(path, overwrite=overwrite) as tmp:
        ds.to_zarr(tmp, mode="w", zarr_format=ZARR_FORMAT, encoding=encoding, consolidated=False)
        mark_complete(tmp)


__all__ = [
    "ZARR_FORMAT", "COMPLETE_ATTR", "VariableSpec", "create_template", "write_region", "chunk_slices",
    "mark_complete", "is_complete", "require_complete", "open_dataset", "atomic_store", "save_dataset",
    "atomic_write_text", "require_writable", "writing", "StoreWriteError",
]
