"""The only module that touches files: local paths and `s3://` URIs alike, through pyarrow.fs.

Locations are strings: an absolute local path (`/data/lake/silver`) or a URI
(`s3://bucket/lake/silver`). Spark, pandas and pyarrow read both as they are; this module gives
the few file operations the stages need on top, with the same meaning on both:

- a local directory is published by one rename (atomic); S3 has no rename, so a tree is copied
  object by object with its commit marker last, then the source is deleted: readers that go
  through the marker (as the lake's readers do) never see a half-copied drop.
- `MLOPS_S3_ENDPOINT` points S3 at another endpoint (MinIO, or moto in tests).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import pyarrow.fs as pafs

ENDPOINT_VARIABLE = "MLOPS_S3_ENDPOINT"


# A local path (str or Path) or a URI.
Location = str | os.PathLike[str]


def is_remote(location: Location) -> bool:
    location = os.fspath(location)
    return "://" in location and not location.startswith("file://")


def join(location: Location, *parts: str) -> str:
    location = os.fspath(location)
    if is_remote(location):
        return posixpath.join(location, *parts)
    return str(Path(location).joinpath(*parts))


def name(location: Location) -> str:
    return posixpath.basename(os.fspath(location).rstrip("/"))


def parent(location: Location) -> str:
    location = os.fspath(location)
    if is_remote(location):
        scheme, _, rest = location.partition("://")
        return f"{scheme}://{posixpath.dirname(rest.rstrip('/'))}"
    return str(Path(location).parent)


@lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None) -> pafs.FileSystem:
    options: dict[str, object] = {}
    if region:
        options["region"] = region
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        options["endpoint_override"] = host
        options["scheme"] = scheme or "https"
    return pafs.S3FileSystem(**options)


def resolve(location: Location) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding `location` (a local path may also be a Path), and the path in it."""
    location = os.fspath(location)
    if location.startswith("s3://"):
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return _s3(os.environ.get(ENDPOINT_VARIABLE), region), location.removeprefix("s3://")
    if is_remote(location):
        filesystem, path = pafs.FileSystem.from_uri(location)
        return filesystem, path
    return pafs.LocalFileSystem(), str(Path(location).resolve())


def _info(location: Location) -> pafs.FileInfo:
    filesystem, path = resolve(location)
    return filesystem.get_file_info(path)


def exists(location: str) -> bool:
    return _info(location).type != pafs.FileType.NotFound


def is_file(location: str) -> bool:
    return _info(location).type == pafs.FileType.File


def is_dir(location: str) -> bool:
    return _info(location).type == pafs.FileType.Directory


def size(location: str) -> int:
    """A file's size in bytes."""
    return int(_info(location).size or 0)


def children(location: str) -> list[str]:
    """Names directly under a directory (files and directories), sorted; [] if it is absent."""
    filesystem, path = resolve(location)
    selector = pafs.FileSelector(path, allow_not_found=True, recursive=False)
    return sorted(posixpath.basename(info.path) for info in filesystem.get_file_info(selector))


def walk_dirs(location: str) -> list[str]:
    """Every directory under `location`, as locations."""
    filesystem, path = resolve(location)
    selector = pafs.FileSelector(path, allow_not_found=True, recursive=True)
    return [
        join(location, posixpath.relpath(info.path, path))
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.Directory
    ]


def make_dirs(location: str) -> None:
    filesystem, path = resolve(location)
    filesystem.create_dir(path, recursive=True)


def read_bytes(location: Location) -> bytes:
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        return bytes(stream.read())


def read_text(location: str) -> str:
    return read_bytes(location).decode("utf-8")


@contextmanager
def open_input(location: Location) -> Iterator[BinaryIO]:
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        yield stream  # type: ignore[misc]


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole file: a temporary file renamed into place locally, one PUT on S3."""
    filesystem, path = resolve(location)
    if isinstance(filesystem, pafs.LocalFileSystem):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        temp.write_bytes(data)
        os.replace(temp, target)
        return
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)


@contextmanager
def open_output(location: str) -> Iterator[BinaryIO]:
    """A file written as a stream and seen whole or not at all: written under a temporary name
    beside it (a dot first, `.tmp` last: no reader of `*.parquet` lists it), moved into place
    when the block ends without an error, deleted when it raises."""
    filesystem, path = resolve(location)
    folder, _, name = path.rpartition("/")
    temp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    if isinstance(filesystem, pafs.LocalFileSystem):
        Path(folder).mkdir(parents=True, exist_ok=True)
    try:
        with filesystem.open_output_stream(temp) as stream:
            yield stream  # type: ignore[misc]
        filesystem.move(temp, path)
    finally:
        if filesystem.get_file_info(temp).type == pafs.FileType.File:
            filesystem.delete_file(temp)


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def upload(local_file: Path, location: str) -> None:
    """Copy a local file to `location` (local or remote)."""
    write_bytes(location, local_file.read_bytes())


def copy_file(source: str, target: str) -> None:
    write_bytes(target, read_bytes(source))


def delete_tree(location: str) -> None:
    filesystem, path = resolve(location)
    if filesystem.get_file_info(path).type == pafs.FileType.Directory:
        filesystem.delete_dir(path)


def delete_file(location: str) -> None:
    filesystem, path = resolve(location)
    if filesystem.get_file_info(path).type == pafs.FileType.File:
        filesystem.delete_file(path)


def move(source: str, target: str, *, commit_last: str | None = None) -> None:
    """Move a file (replacing `target`) or a directory tree (`target` must not exist).

    Local: one atomic rename. S3: every object copied, the one named `commit_last` after all
    others, then the source deleted.
    """
    filesystem, source_path = resolve(source)
    _, target_path = resolve(target)
    if isinstance(filesystem, pafs.LocalFileSystem):
        Path(target_path).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source_path, target_path)
        return
    info = filesystem.get_file_info(source_path)
    if info.type == pafs.FileType.File:
        filesystem.copy_file(source_path, target_path)
        filesystem.delete_file(source_path)
        return
    files = [
        entry.path
        for entry in filesystem.get_file_info(pafs.FileSelector(source_path, recursive=True))
        if entry.type == pafs.FileType.File
    ]
    files.sort(key=lambda p: posixpath.basename(p) == commit_last)
    for path in files:
        filesystem.copy_file(
            path, posixpath.join(target_path, posixpath.relpath(path, source_path))
        )
    filesystem.delete_dir(source_path)


def local_copy_of_tree(source_dir: Path, location: str) -> None:
    """Copy a local directory tree to `location` (for tools that only write locally)."""
    if not is_remote(location):
        shutil.copytree(source_dir, location, dirs_exist_ok=True)
        return
    for path in sorted(source_dir.rglob("*")):
        if path.is_file():
            upload(path, join(location, *path.relative_to(source_dir).parts))
