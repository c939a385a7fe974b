"""A Pusher whose versions appear in one step and never repeat.

    pusher = Pusher(model=..., model_blessing=..., infra_blessing=...,
                    push_destination=...)   # TFX's Pusher, with this executor

TFX's own Pusher copies the model file by file into `<serving_dir>/<unix
time>/`, so TF Serving, which polls the directory, can see a version that is
still being written, and a re-run that pushes the same model again adds a
second, identical version. This executor keeps TFX's contract (same inputs,
same blessing check, same PushedModel properties `pushed`, `pushed_destination`
and `pushed_version`, which tfx_pipeline/run_summary.py reads) and changes how
the copy lands:

- the model is copied into a hidden temporary directory inside `serving_dir`
  (TF Serving only loads directories with integer names), then `os.rename`d to
  its version number, which is atomic on one local filesystem;
- versions only increase: max(unix time, highest existing version + 1);
- each version carries `push_record.json` naming the model it came from, so
  pushing the same model again reports the existing version instead of adding
  a duplicate;
- each version carries its model card in `assets.extra/`, written into the
  copy before the rename (tfx_pipeline/model_card.py);
- a model that is not blessed pushes nothing and leaves `serving_dir`
  untouched;
- a full disk fails the push with `the disk is full: <serving_dir> (<free>
  free ...)` and leaves no version and no temporary copy; a model bigger than
  the free space is refused before anything is written;
- a run killed while copying leaves its temporary directory behind: the next
  push removes it once it is provably dead (named after a process of this host
  that no longer exists, or older than a day), never a live push's.

Object stores (gs://, s3://) have no atomic directory rename; there the
executor falls back to TFX's own copy.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from absl import logging
from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.components.pusher import executor as tfx_pusher
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from components import disk_space
from tfx_pipeline import model_card
from components import tflite_export
from tfx_pipeline import root_lock

PUSH_RECORD = 'push_record.json'  # inside each version: which model it holds
TEMP_PREFIX = '.push-tmp-'  # hidden, non-numeric: TF Serving ignores it
STALE_TEMP_SECONDS = 24 * 3600  # a temp dir this old is dead whoever made it
_RENAME_ATTEMPTS = 5  # another pusher may take a version number between our look and rename


def base_directory(exec_properties: Dict[str, Any]) -> str:
  """The filesystem push destination from the Pusher's exec properties."""
  destination = tfx.proto.PushDestination()
  proto_utils.json_to_proto(
      exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
  if destination.WhichOneof('destination') != 'filesystem':
    raise NotImplementedError(
        f'push destination {destination.WhichOneof("destination")!r} is not supported; '
        'give PushDestination.filesystem')
  return destination.filesystem.base_directory


def is_local(path: str) -> bool:
  return '://' not in path


def version_numbers(names: Iterable[str]) -> List[int]:
  """The integer names among `names`, sorted: what TF Serving sees as versions."""
  return sorted(int(n) for n in names if n.isascii() and n.isdigit())


def next_version(existing: Iterable[int], now: float) -> int:
  """Unix time, unless that would not exceed every existing version."""
  return max([int(now)] + [v + 1 for v in existing])


def read_record(version_dir: str) -> Optional[dict]:
  try:
    with open(os.path.join(version_dir, PUSH_RECORD)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None  # pushed by something else, or not a version directory


def pushed_version_of(serving_dir: str, model_path: str) -> Optional[int]:
  """The newest version in `serving_dir` that was pushed from `model_path`, if any."""
  if not os.path.isdir(serving_dir):
    return None
  for version in reversed(version_numbers(os.listdir(serving_dir))):
    record = read_record(os.path.join(serving_dir, str(version)))
    if record and record.get('model_path') == model_path:
      return version
  return None


def copy_model(model_path: str, destination: str) -> None:
  """Copies the SavedModel directory (any filesystem TFX reads) to `destination`."""
  io_utils.copy_dir(model_path, destination)


def temp_name(host: str, pid: int) -> str:
  """`.push-tmp-<host>-<pid>-<random>`: says whose copy it is, for `is_stale`."""
  return f'{TEMP_PREFIX}{host}-{pid}-{uuid.uuid4().hex}'


def temp_owner(name: str) -> Optional[Tuple[str, int]]:
  """(host, pid) from a temp dir's name; None for other names and the old unnamed form."""
  if not name.startswith(TEMP_PREFIX):
    return None
  parts = name[len(TEMP_PREFIX):].rsplit('-', 2)  # host names may contain '-'
  if len(parts) != 3 or not parts[1].isdigit():
    return None
  return parts[0], int(parts[1])


def is_stale(name: str, age_seconds: float, host: str, pid_alive) -> bool:
  """Whether a temp dir is provably dead: its process is gone, or it is very old."""
  if age_seconds > STALE_TEMP_SECONDS:
    return True
  owner = temp_owner(name)
  return owner is not None and owner[0] == host and not pid_alive(owner[1])


def remove_stale_temps(serving_dir: str, now=time.time) -> List[str]:
  """Deletes the temp dirs of pushes that died; returns their names."""
  host, removed = socket.gethostname(), []
  for name in sorted(os.listdir(serving_dir)):
    path = os.path.join(serving_dir, name)
    if not name.startswith(TEMP_PREFIX) or not os.path.isdir(path):
      continue
    try:
      age = now() - os.stat(path).st_mtime
    except FileNotFoundError:
      continue  # its push just renamed or removed it
    if is_stale(name, age, host, root_lock.pid_alive):
      shutil.rmtree(path, ignore_errors=True)
      removed.append(name)
  if removed:
    logging.warning('Removed %d temporary copies left by pushes that died: %s',
                    len(removed), ', '.join(removed))
  return removed


def check_space(model_path: str, serving_dir: str) -> None:
  """Refuses, before writing anything, a model bigger than the free space."""
  if not is_local(model_path):
    return  # sizing a remote tree costs a listing; the copy itself will tell
  needed, free = disk_space.tree_bytes(model_path), disk_space.free_bytes(serving_dir)
  if needed > free:
    raise disk_space.DiskFullError(serving_dir, disk_space.full_message(
        serving_dir, f'the model needs {disk_space.human(needed)} ({model_path}); '
        'nothing was pushed'))


def push(model_path: str, serving_dir: str, now=time.time,
         before_rename: Optional[Callable[[str, int], None]] = None) -> int:
  """Places a copy of `model_path` at `serving_dir/<new version>/` atomically.

  `before_rename(copy_dir, version)` may add files to the copy before it
  becomes `version` (the model card, which names it); it is called again with
  the next number if a concurrent push claims that one first. Returns the
  version. If `model_path` was pushed
  before, returns that version and copies nothing. Raises DiskFullError when
  the disk is full, leaving `serving_dir` without a new version or a temporary
  copy.
  """
  if os.path.isdir(serving_dir):
    remove_stale_temps(serving_dir)
  existing = pushed_version_of(serving_dir, model_path)
  if existing is not None:
    logging.info('Model %s is already served as version %d; not pushing it again.',
                 model_path, existing)
    return existing
  os.makedirs(serving_dir, exist_ok=True)
  check_space(model_path, serving_dir)
  temp_dir = os.path.join(serving_dir, temp_name(socket.gethostname(), os.getpid()))
  try:
    copy_model(model_path, temp_dir)
    with open(os.path.join(temp_dir, PUSH_RECORD), 'w') as f:
      json.dump({'model_path': model_path, 'pushed_at': now()}, f)
    return _rename_to_next_version(temp_dir, serving_dir, now, before_rename)
  except BaseException as e:
    shutil.rmtree(temp_dir, ignore_errors=True)
    if isinstance(e, Exception) and disk_space.is_disk_full(e):
      raise disk_space.DiskFullError(serving_dir, disk_space.full_message(
          serving_dir, f'the copy of {model_path} failed ({e.__class__.__name__}); '
          'no version was written and the partial copy is removed')) from e
    raise


def _rename_to_next_version(temp_dir: str, serving_dir: str, now,
                            before_rename: Optional[Callable[[str, int], None]]) -> int:
  for _ in range(_RENAME_ATTEMPTS):
    version = next_version(version_numbers(os.listdir(serving_dir)), now())
    if before_rename is not None:
      before_rename(temp_dir, version)
    target = os.path.join(serving_dir, str(version))
    try:
      os.rename(temp_dir, target)  # fails on a non-empty target: never overwrites a version
    except OSError:
      if os.path.exists(target):
        continue  # a concurrent push took this number; look again
      raise
    return version
  raise RuntimeError(f'could not claim a new version in {serving_dir} after '
                     f'{_RENAME_ATTEMPTS} attempts (concurrent pushes?)')


class Executor(tfx_pusher.Executor):
  """TFX's Pusher executor with atomic, increasing, non-duplicated versions."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    serving_dir = base_directory(exec_properties)
    if not is_local(serving_dir):
      logging.warning('%s is not a local path; using TFX\'s non-atomic copy.', serving_dir)
      super().Do(input_dict, output_dict, exec_properties)
      return
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    model_path = self.GetModelPath(input_dict)
    run_id = self._context.pipeline_run_id if self._context else None
    version = push(model_path, serving_dir, before_rename=model_card.for_push(
        exec_properties, run_id, model_path))
    destination = os.path.join(serving_dir, str(version))
    logging.info('Model %s is served from %s.', model_path, destination)
    tflite_dir = tflite_export.publish(model_path, serving_dir, version)
    if tflite_dir:
      logging.info('Its TFLite model is in %s.', tflite_dir)
    # Like TFX: archive the pushed model in the PushedModel artifact too.
    try:
      io_utils.copy_dir(model_path, model_push.uri)
    except Exception as e:  # pylint: disable=broad-except
      if not disk_space.is_disk_full(e):
        raise
      raise disk_space.DiskFullError(model_push.uri, disk_space.full_message(
          model_push.uri, f'version {version} is served, but its archive in the pipeline '
          'root could not be written')) from e
    self._MarkPushed(model_push, pushed_destination=destination, pushed_version=str(version))


class Pusher(tfx.components.Pusher):
  """TFX's Pusher component (same inputs, outputs and parameters), run by `Executor`.

  A subclass rather than `tfx.components.Pusher(custom_executor_spec=...)`,
  which TFX deprecates (and warns about on every run).
  """
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
