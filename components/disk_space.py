"""A full disk: recognize it, say where, and write so that it leaves no half file.

A full filesystem surfaces in many shapes: an OSError with errno ENOSPC from
Python, TensorFlow's ResourceExhaustedError ("No space left on device") from
tf.io.gfile, h5py's OSError with the errno in its text, SQLite's "database or
disk is full" from MLMD. `is_disk_full` recognizes them anywhere in an
exception's chain, so the Pusher, the Trainer's checkpoint and the runner can
all say the same plain thing: `the disk is full: <path> (<free> free)`.

Files that a later run reads back (the Trainer's epoch journal, the Tuner's
last_search.json) are written whole or not at all (`write_json`): a full disk
must not turn a resumable run into one that fails on a truncated file, and
processes that write the same file at once (a parallel search's chief and
workers) leave one whole file, the last writer's.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from typing import Any, Iterable, Iterator, Optional

import tensorflow as tf

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXTS = ('no space left on device', 'disk quota exceeded', 'database or disk is full',
               'errno = 28', 'errno 28')


class DiskFullError(OSError):
  """A write failed, or would fail, for lack of space at `path`."""

  def __init__(self, path: str, message: str):
    super().__init__(errno.ENOSPC, message, path)
    self.path = path

  def __str__(self) -> str:
    return self.strerror


def chain(error: BaseException) -> Iterator[BaseException]:
  """`error`, then its causes and contexts, each once."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def is_disk_full(error: BaseException) -> bool:
  for e in chain(error):
    if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
      return True
    if any(text in str(e).lower() for text in _FULL_TEXTS):
      return True
  return False


def existing_ancestor(path: str) -> str:
  """`path`, or the nearest directory above it that exists (disk_usage needs one)."""
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path


def free_bytes(path: str) -> int:
  """Bytes this process may still write on `path`'s filesystem (root may use the reserve)."""
  stat = os.statvfs(existing_ancestor(path))
  blocks = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail
  return blocks * stat.f_frsize


def human(n: float) -> str:
  for unit in ('bytes', 'KB', 'MB', 'GB'):
    if abs(n) < 1024 or unit == 'GB':
      return f'{n:.0f} {unit}' if unit == 'bytes' else f'{n:.1f} {unit}'
    n /= 1024
  raise AssertionError('unreachable')


def where(path: str) -> str:
  """`<path> (<free> free of <total>)` for a local path; the path alone for a URL."""
  if '://' in path:
    return path
  total = shutil.disk_usage(existing_ancestor(path)).total
  return f'{path} ({human(free_bytes(path))} free of {human(total)})'


def full_message(path: str, what: str) -> str:
  """One line: the disk is full, where, and what could not be written."""
  return f'the disk is full: {where(path)}; {what}'


def fullest(paths: Iterable[Optional[str]]) -> Optional[str]:
  """The local path among `paths` with the least free space (where a write most likely failed)."""
  local = [p for p in paths if p and '://' not in p]
  return min(local, key=free_bytes) if local else None


def failed_path(error: BaseException, candidates: Iterable[Optional[str]]) -> Optional[str]:
  """Where a disk-full `error` happened: the path it names, else the fullest candidate."""
  for e in chain(error):
    if isinstance(e, DiskFullError):
      return e.path
    if isinstance(e, OSError) and e.errno in _FULL_ERRNOS and e.filename:
      return os.fsdecode(e.filename)
  return fullest(candidates)


def tree_bytes(path: str) -> int:
  """Bytes of every file under `path` (any filesystem TensorFlow reads)."""
  total = 0
  for dirpath, _, filenames in tf.io.gfile.walk(path):
    for name in filenames:
      total += tf.io.gfile.stat(os.path.join(dirpath, name)).length
  return total


def write_json(path: str, value: Any, indent: Optional[int] = None) -> None:
  """Writes `path` whole or not at all: a temp file beside it, then a rename.

  Each write has a temp file of its own, so concurrent writers never write into
  each other's. Raises DiskFullError, naming the directory, when the disk is full.
  """
  temp = f'{path}.partial-{uuid.uuid4().hex}'
  try:
    with tf.io.gfile.GFile(temp, 'w') as f:
      json.dump(value, f, indent=indent)
    tf.io.gfile.rename(temp, path, overwrite=True)
  except Exception as e:
    if tf.io.gfile.exists(temp):
      tf.io.gfile.remove(temp)
    if not is_disk_full(e):
      raise
    folder = os.path.dirname(path)
    raise DiskFullError(folder, full_message(folder, f'{path} could not be written')) from e
