"""components/disk_space.py: what a full disk looks like, and writes that leave no half file."""

import errno
import json
import os
import sqlite3

import pytest
import tensorflow as tf

import fixtures
from components import disk_space


@pytest.mark.parametrize('make_error', [
    lambda: OSError(errno.ENOSPC, 'No space left on device'),
    lambda: OSError(errno.EDQUOT, 'Disk quota exceeded'),
    lambda: tf.errors.ResourceExhaustedError(None, None, '/r/x; No space left on device'),
    lambda: sqlite3.OperationalError('database or disk is full'),
    lambda: RuntimeError("Can't decrement id ref count (file write failed: ..., errno = 28, "
                         "error message = 'No space left on device')"),
])
def test_a_full_disk_is_recognized_in_its_many_shapes(make_error):
  error = make_error()
  assert disk_space.is_disk_full(error)
  try:  # also as the cause of another error
    try:
      raise error
    except Exception as e:
      raise RuntimeError('the component failed') from e
  except RuntimeError as wrapped:
    assert disk_space.is_disk_full(wrapped)


@pytest.mark.parametrize('error', [
    OSError(errno.EACCES, 'Permission denied'), ValueError('bad value'),
    tf.errors.ResourceExhaustedError(None, None, 'OOM when allocating tensor')])
def test_other_errors_are_not_a_full_disk(error):
  assert not disk_space.is_disk_full(error)


def test_the_failed_path_is_the_one_the_error_names_else_the_fullest(tmp_path):
  named = OSError(errno.ENOSPC, 'No space left on device', '/srv/models/7')
  assert disk_space.failed_path(named, [str(tmp_path)]) == '/srv/models/7'
  ours = disk_space.DiskFullError('/srv/models', 'the disk is full: /srv/models')
  assert disk_space.failed_path(ours, []) == '/srv/models'
  unnamed = tf.errors.ResourceExhaustedError(None, None, 'No space left on device')
  assert disk_space.failed_path(unnamed, [None, 'gs://b/p', str(tmp_path)]) == str(tmp_path)
  assert disk_space.failed_path(unnamed, ['gs://b/p']) is None


def test_sizes_in_words():
  assert [disk_space.human(n) for n in (0, 1000, 64 * 1024, 4 * 2**20, 3 * 2**40)] == [
      '0 bytes', '1000 bytes', '64.0 KB', '4.0 MB', '3072.0 GB']


def test_full_disk_a_json_write_fails_whole_and_keeps_the_old_file(small_disk):
  path = os.path.join(small_disk, 'epoch_log.json')
  disk_space.write_json(path, [{'epoch': 1}])
  fixtures.fill_disk(small_disk)
  with pytest.raises(disk_space.DiskFullError) as info:
    disk_space.write_json(path, [{'epoch': 1}, {'epoch': 2, 'notes': 'x' * 100000}])
  assert str(info.value).startswith(f'the disk is full: {small_disk} (0 bytes free of 4.0 MB)')
  assert f'{path} could not be written' in str(info.value)
  with open(path) as f:
    assert json.load(f) == [{'epoch': 1}]
  assert sorted(os.listdir(small_disk)) == ['epoch_log.json', 'filler']



def test_json_writers_at_once_leave_one_whole_file(tmp_path, monkeypatch):
  path = str(tmp_path / 'last_search.json')
  last = fixtures.write_with_another_writer_midway(monkeypatch, disk_space.write_json, path)
  with open(path) as f:
    assert json.load(f) == last  # the writer that renamed last
  assert os.listdir(tmp_path) == ['last_search.json']
