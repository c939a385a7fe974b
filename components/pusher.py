"""A Pusher executor whose versions appear in one step and never repeat.

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
- a model that is not blessed pushes nothing and leaves `serving_dir`
  untouched.

Object stores (gs://, s3://) have no atomic directory rename; there the
executor falls back to TFX's own copy.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

PUSH_RECORD = 'push_record.json'  # inside each version: which model it holds
TEMP_PREFIX = '.push-tmp-'  # hidden, non-numeric: TF Serving ignores it
_RENAME_ATTEMPTS = 5  # another pusher may take a version number between our look and rename


def base_directory(exec_properties: Dict[str, Any]) -> str:
  """The filesystem push destination from the Pusher's exec properties."""
  destination = pusher_pb2.PushDestination()
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


def push(model_path: str, serving_dir: str, now=time.time) -> int:
  """Places a copy of `model_path` at `serving_dir/<new version>/` atomically.

  Returns the version. If `model_path` was pushed before, returns that
  version and copies nothing.
  """
  existing = pushed_version_of(serving_dir, model_path)
  if existing is not None:
    logging.info('Model %s is already served as version %d; not pushing it again.',
                 model_path, existing)
    return existing
  os.makedirs(serving_dir, exist_ok=True)
  temp_dir = os.path.join(serving_dir, TEMP_PREFIX + uuid.uuid4().hex)
  try:
    copy_model(model_path, temp_dir)
    with open(os.path.join(temp_dir, PUSH_RECORD), 'w') as f:
      json.dump({'model_path': model_path, 'pushed_at': now()}, f)
    return _rename_to_next_version(temp_dir, serving_dir, now)
  except BaseException:
    shutil.rmtree(temp_dir, ignore_errors=True)
    raise


def _rename_to_next_version(temp_dir: str, serving_dir: str, now) -> int:
  for _ in range(_RENAME_ATTEMPTS):
    version = next_version(version_numbers(os.listdir(serving_dir)), now())
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
    version = push(model_path, serving_dir)
    destination = os.path.join(serving_dir, str(version))
    logging.info('Model %s is served from %s.', model_path, destination)
    # Like TFX: archive the pushed model in the PushedModel artifact too.
    io_utils.copy_dir(model_path, model_push.uri)
    self._MarkPushed(model_push, pushed_destination=destination, pushed_version=str(version))
