"""The Trainer's resume checkpoint: checked for room, replaced whole or not at all.

Keras' BackupAndRestore overwrites `latest.weights.h5` and
`training_metadata.json` in place at the end of every epoch, through h5py.
On a full disk, h5py (3.16, pinned) does not raise: it crashes the process
with a segmentation fault after printing screens of "errno = 28" errors, and
the file it leaves behind is truncated, so a re-run fails reading it. This
callback:

- checks before every save that the filesystem has room for the checkpoint
  (`weights_bytes`: every model and optimizer variable, plus h5's overhead),
  and otherwise fails the run with `the disk is full: <backup dir> (<free>
  free ...)` without writing anything;
- writes both files beside the live ones and renames them into place, so a
  save that fails all the same leaves the previous epoch's checkpoint as it
  was. (The price: room for a second copy while it saves.)

After space is freed, the same command resumes from the last epoch that was
saved. The class overrides `_save_model`, Keras 3's (private) save hook:
tests/test_checkpoint.py checks the resume on the pinned Keras.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

from components import disk_space

_PARTIAL = 'partial-'  # prefix of the files being written; keras wants `.weights.h5` at the end
_H5_BYTES_PER_VARIABLE = 4096  # h5's headers per dataset (measured: 1-2 KB), rounded up
_H5_BYTES_PER_FILE = 64 * 1024  # its superblock, groups and our metadata file, rounded up


def weights_bytes(model: keras.Model) -> int:
  """An upper bound on the bytes of `model.save_weights`: model and optimizer variables."""
  variables = list(model.variables)
  optimizer = getattr(model, 'optimizer', None)  # none before compile()
  if optimizer is not None and optimizer.built:
    variables += list(optimizer.variables)
  data = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
  return data + _H5_BYTES_PER_VARIABLE * len(variables) + _H5_BYTES_PER_FILE


def ensure_room(model: keras.Model, directory: str, what: str, advice: str = '') -> None:
  """Raises DiskFullError when `directory`'s filesystem cannot hold `model`'s weights.

  h5py crashes the process on a full disk instead of raising, so saving Keras
  weights must not start without room (remote paths are not checked).
  """
  if '://' in directory:
    return
  needed = weights_bytes(model)
  if disk_space.free_bytes(directory) < needed:
    raise disk_space.DiskFullError(directory, disk_space.full_message(
        directory, f'{what} needs {disk_space.human(needed)}; nothing was written. {advice}'
        .strip()))


class RoomCheck(keras.callbacks.Callback):
  """Fails the fit cleanly, at an epoch's end, when `directory` has no room for the weights.

  For checkpoints that other code saves through h5py after this callback runs
  (keras-tuner's per-trial `SaveBestEpoch`, which it appends after the fit's
  own callbacks).
  """

  def __init__(self, directory: str, what: str, advice: str = ''):
    super().__init__()
    self.directory, self.what, self.advice = directory, what, advice

  def on_epoch_end(self, epoch, logs=None):
    ensure_room(self.model, self.directory, self.what, self.advice)


def _remove(path: str) -> None:
  try:
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  except tf.errors.OpError:
    pass  # best effort: the failure being reported matters more


class BackupAndRestore(keras.callbacks.BackupAndRestore):
  """keras.callbacks.BackupAndRestore whose checkpoint survives a failed save.

  `save=False` only restores: a multi-worker cluster's other workers resume
  from the chief's checkpoint and must not write the same files at once.
  """

  def __init__(self, backup_dir: str, save: bool = True, **kwargs):
    super().__init__(backup_dir, **kwargs)
    self.writes = save

  def _partial(self, path: str) -> str:
    return os.path.join(os.path.dirname(path), _PARTIAL + os.path.basename(path))

  def on_train_end(self, logs=None):
    if self.writes:  # the one that writes the checkpoint removes it when training is done
      super().on_train_end(logs)

  def _save_model(self):
    if not self.writes:
      return
    what = f'the Trainer checkpoint of epoch {self._current_epoch}'
    advice = ('Free space and run the same command again: training resumes from the last '
              'checkpoint that was saved.')
    weights, metadata = self._partial(self._weights_path), \
        self._partial(self._training_metadata_path)
    try:
      tf.io.gfile.makedirs(self.backup_dir)
      ensure_room(self.model, self.backup_dir, what, advice)
      self.model.save_weights(filepath=weights, overwrite=True)
      with tf.io.gfile.GFile(metadata, 'w') as f:
        f.write(json.dumps({'epoch': self._current_epoch, 'batch': self._last_batch_seen}))
      # Weights first: a crash between the renames re-trains one epoch, never skips one.
      tf.io.gfile.rename(weights, self._weights_path, overwrite=True)
      tf.io.gfile.rename(metadata, self._training_metadata_path, overwrite=True)
    except disk_space.DiskFullError:
      raise
    except Exception as e:
      for path in (weights, metadata):
        _remove(path)
      if not disk_space.is_disk_full(e):
        raise
      raise disk_space.DiskFullError(self.backup_dir, disk_space.full_message(
          self.backup_dir, f'{what} could not be written; the previous one is kept. '
          + advice)) from e
