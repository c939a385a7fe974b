"""The Trainer's resume checkpoint on a full disk: a clear error, the last checkpoint kept.

A tiny Keras model trains for a few epochs with components/checkpoint.py's
BackupAndRestore, as the Trainer's does; the disk fills up between epochs.
The re-run (a fresh model, the same backup directory) must resume.
"""

import errno
import json
import os

import keras
import numpy as np
import pytest

import fixtures
from components import checkpoint
from components import disk_space

X, Y = np.random.default_rng(0).normal(size=(16, 20)), np.zeros((16, 1))


def tiny_model():
  model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(256), keras.layers.Dense(1)])
  model.compile(keras.optimizers.SGD(0.01, momentum=0.9), 'mse')
  return model


class Record(keras.callbacks.Callback):
  """The weights training starts from, each epoch run, and the weights after each."""

  def __init__(self):
    super().__init__()
    self.start, self.epochs, self.after = None, [], {}

  def on_train_begin(self, logs=None):
    self.start = self.model.get_weights()

  def on_epoch_end(self, epoch, logs=None):
    self.epochs.append(epoch)
    self.after[epoch] = self.model.get_weights()


class At(keras.callbacks.Callback):
  """Calls `action` at the end of epoch `epoch` (after the checkpoint was saved)."""

  def __init__(self, epoch, action):
    super().__init__()
    self.epoch, self.action = epoch, action

  def on_epoch_end(self, epoch, logs=None):
    if epoch == self.epoch:
      self.action()


def saved_epoch(backup):
  with open(os.path.join(backup, 'training_metadata.json')) as f:
    return json.load(f)['epoch']


def resume(backup):
  """The re-run: a fresh model with the same backup; returns what it did."""
  record = Record()
  tiny_model().fit(X, Y, epochs=4, verbose=0,
                   callbacks=[checkpoint.BackupAndRestore(backup), record])
  return record


def test_full_disk_the_trainer_stops_with_a_clear_message_and_the_rerun_resumes(small_disk):
  backup = os.path.join(small_disk, 'train_backup', 'abc123')
  filler = []
  first = Record()
  with pytest.raises(disk_space.DiskFullError) as info:
    tiny_model().fit(X, Y, epochs=4, verbose=0, callbacks=[
        checkpoint.BackupAndRestore(backup), first,
        At(1, lambda: filler.append(fixtures.fill_disk(small_disk, leave=32 * 1024)))])
  message = str(info.value)
  assert message.startswith(f'the disk is full: {backup} (')
  assert 'free of 4.0 MB); the Trainer checkpoint of epoch 3 needs' in message
  assert 'nothing was written' in message and 'training resumes' in message
  assert sorted(os.listdir(backup)) == ['latest.weights.h5', 'training_metadata.json']
  assert saved_epoch(backup) == 2

  os.remove(filler[0])  # space is back
  again = resume(backup)
  assert again.epochs == [2, 3]  # resumed after the last saved epoch
  for restored, saved in zip(again.start, first.after[1]):
    np.testing.assert_array_equal(restored, saved)
  assert not os.path.exists(backup)  # Keras deletes the backup when training ends


def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  backup = str(tmp_path / 'backup')
  real_save = keras.Model.save_weights

  def save_half_then_fail(self, filepath, **kwargs):  # the disk filled up during the write
    with open(filepath, 'wb') as f:
      f.write(b'\x89HDF\r\n half a file')
    raise OSError(errno.ENOSPC, 'No space left on device', filepath)

  first = Record()
  with pytest.raises(disk_space.DiskFullError) as info:
    tiny_model().fit(X, Y, epochs=4, verbose=0, callbacks=[
        checkpoint.BackupAndRestore(backup), first,
        At(0, lambda: monkeypatch.setattr(keras.Model, 'save_weights', save_half_then_fail))])
  assert 'the Trainer checkpoint of epoch 2 could not be written; the previous one is kept' \
      in str(info.value)
  assert sorted(os.listdir(backup)) == ['latest.weights.h5', 'training_metadata.json']
  assert saved_epoch(backup) == 1

  monkeypatch.setattr(keras.Model, 'save_weights', real_save)
  again = resume(backup)
  assert again.epochs == [1, 2, 3]
  for restored, saved in zip(again.start, first.after[0]):
    np.testing.assert_array_equal(restored, saved)


def test_the_room_a_checkpoint_needs_bounds_what_keras_writes(tmp_path):
  model = tiny_model()
  model.fit(X, Y, epochs=1, verbose=0)  # builds the optimizer's momentum too
  path = str(tmp_path / 'a.weights.h5')
  model.save_weights(path)
  size = os.path.getsize(path)
  assert size < checkpoint.weights_bytes(model) < 2 * size + 256 * 1024


def test_full_disk_a_tuner_trial_stops_before_keras_tuner_saves_its_weights(small_disk):
  trial_dir = os.path.join(small_disk, 'tuner_state', 'trial_0001')
  os.makedirs(trial_dir)
  fixtures.fill_disk(small_disk, leave=32 * 1024)
  saves = Record()  # stands for keras-tuner's SaveBestEpoch, which runs after the fit's callbacks
  with pytest.raises(disk_space.DiskFullError) as info:
    tiny_model().fit(X, Y, epochs=2, verbose=0, callbacks=[
        checkpoint.RoomCheck(trial_dir, "a Tuner trial's checkpoint", 'Run it again.'), saves])
  assert str(info.value).startswith(f'the disk is full: {trial_dir} (')
  assert "a Tuner trial's checkpoint needs" in str(info.value)
  assert str(info.value).endswith('nothing was written. Run it again.')
  assert saves.epochs == []
