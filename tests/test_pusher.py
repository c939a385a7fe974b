"""The Pusher executor, called directly with hand-made artifacts.

Versions are integers that only increase, appear whole (never half-written),
are not duplicated when the same model is pushed again, and a model that is
not blessed leaves the serving directory byte for byte as it was. A full disk
fails the push in one plain message and leaves nothing behind; a push that
died leaves a temporary copy that the next push removes.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as keys

import fixtures
from components import disk_space
from components import pusher


def save_tiny_model(path: str, value: float) -> None:
  """A SavedModel whose one signature returns `value` (tells models apart)."""
  module = tf.Module()
  module.value = tf.Variable(value)
  module.f = tf.function(lambda: {'value': module.value.read_value()}, input_signature=[])
  tf.saved_model.save(module, path, signatures={'serving_default': module.f})


@pytest.fixture(scope='module')
def model_uris(tmp_path_factory):
  """Two Trainer-style model artifacts: <uri>/Format-Serving/saved_model.pb."""
  uris = []
  for value in (1.0, 2.0):
    uri = str(tmp_path_factory.mktemp('model'))
    save_tiny_model(os.path.join(uri, 'Format-Serving'), value)
    uris.append(uri)
  return uris


def run_pusher(model_uri: str, blessed: int, serving_dir: str, out_uri: str):
  """Runs the executor as TFX would; returns the PushedModel artifact."""
  model = standard_artifacts.Model()
  model.uri = model_uri
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = out_uri + '_blessing'
  blessing.set_int_custom_property('blessed', blessed)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = out_uri
  exec_properties = {keys.PUSH_DESTINATION_KEY: json.dumps(
      {'filesystem': {'base_directory': serving_dir}})}
  pusher.Executor().Do({keys.MODEL_KEY: [model], keys.MODEL_BLESSING_KEY: [blessing]},
                       {keys.PUSHED_MODEL_KEY: [pushed]}, exec_properties)
  return pushed


def numeric_entries(serving_dir: str):
  return sorted(n for n in os.listdir(serving_dir) if n.isdigit())


def served_value(version_dir: str) -> float:
  loaded = tf.saved_model.load(version_dir)
  return float(loaded.signatures['serving_default']()['value'])


def snapshot(root: str) -> dict:
  """Every path under `root` with its bytes (None for directories)."""
  tree = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for d in dirnames:
      tree[os.path.relpath(os.path.join(dirpath, d), root)] = None
    for name in filenames:
      with open(os.path.join(dirpath, name), 'rb') as f:
        tree[os.path.relpath(os.path.join(dirpath, name), root)] = f.read()
  return tree


def test_version_helpers():
  assert pusher.version_numbers(['12', '.push-tmp-ab', '3', 'notes', '1e3', '']) == [3, 12]
  assert pusher.next_version([], 1700000000.7) == 1700000000
  assert pusher.next_version([5, 1700000000], 1700000000.2) == 1700000001
  assert pusher.next_version([9999999999], 1700000000) == 10000000000


def test_a_blessed_model_becomes_a_numeric_version_with_tfx_properties(model_uris, tmp_path):
  serving_dir = str(tmp_path / 'serving')
  pushed = run_pusher(model_uris[0], 1, serving_dir, str(tmp_path / 'pushed'))
  versions = numeric_entries(serving_dir)
  assert len(versions) == 1 and os.listdir(serving_dir) == versions  # nothing else left over
  version_dir = os.path.join(serving_dir, versions[0])
  assert os.path.isfile(os.path.join(version_dir, 'saved_model.pb'))
  assert served_value(version_dir) == 1.0
  assert pushed.get_int_custom_property('pushed') == 1
  assert pushed.get_string_custom_property('pushed_destination') == version_dir
  assert pushed.get_string_custom_property('pushed_version') == versions[0]
  assert os.path.isfile(os.path.join(pushed.uri, 'saved_model.pb'))  # archived, like TFX


def test_versions_only_increase_even_behind_a_future_version(model_uris, tmp_path):
  serving_dir = tmp_path / 'serving'
  (serving_dir / '99999999999').mkdir(parents=True)  # e.g. pushed from a clock far ahead
  (serving_dir / '99999999999' / 'saved_model.pb').write_bytes(b'old')
  first = run_pusher(model_uris[0], 1, str(serving_dir), str(tmp_path / 'p1'))
  second = run_pusher(model_uris[1], 1, str(serving_dir), str(tmp_path / 'p2'))
  assert first.get_string_custom_property('pushed_version') == '100000000000'
  assert second.get_string_custom_property('pushed_version') == '100000000001'
  assert served_value(str(serving_dir / '100000000001')) == 2.0


def test_two_pushes_in_the_same_second_get_different_versions(model_uris, tmp_path):
  serving_dir = str(tmp_path / 'serving')
  clock = lambda: 1700000000.5  # noqa: E731
  a = pusher.push(os.path.join(model_uris[0], 'Format-Serving'), serving_dir, now=clock)
  b = pusher.push(os.path.join(model_uris[1], 'Format-Serving'), serving_dir, now=clock)
  assert (a, b) == (1700000000, 1700000001)


def test_the_hook_before_the_rename_is_told_the_version_the_copy_becomes(model_uris, tmp_path):
  serving_dir = str(tmp_path / 'serving')
  clock = lambda: 1700000000.5  # noqa: E731
  told = []

  def hook(copy_dir, version):  # e.g. the model card, which names its version
    told.append(version)
    if len(told) == 1:  # a concurrent push claims this number while the card is written
      os.makedirs(os.path.join(serving_dir, str(version)))
      open(os.path.join(serving_dir, str(version), 'saved_model.pb'), 'wb').close()

  version = pusher.push(os.path.join(model_uris[0], 'Format-Serving'), serving_dir, now=clock,
                        before_rename=hook)
  assert told == [1700000000, 1700000001] and version == 1700000001  # told again, the new one


def test_no_numeric_directory_is_visible_while_copying(model_uris, tmp_path, monkeypatch):
  serving_dir = str(tmp_path / 'serving')
  seen_during_copy = []
  real_copy = pusher.copy_model

  def watched_copy(src, dst):
    real_copy(src, dst)
    seen_during_copy.append(os.listdir(serving_dir))

  monkeypatch.setattr(pusher, 'copy_model', watched_copy)
  run_pusher(model_uris[0], 1, serving_dir, str(tmp_path / 'pushed'))
  assert len(seen_during_copy) == 1
  names = seen_during_copy[0]
  assert len(names) == 1 and names[0].startswith('.')  # only the hidden temporary copy
  assert not pusher.version_numbers(names)
  assert len(numeric_entries(serving_dir)) == 1  # and afterwards, the whole version


def test_a_failed_copy_leaves_no_version_and_no_debris(model_uris, tmp_path, monkeypatch):
  serving_dir = tmp_path / 'serving'
  (serving_dir / '5').mkdir(parents=True)
  before = snapshot(str(serving_dir))

  def copy_then_fail(src, dst):
    os.makedirs(dst)
    with open(os.path.join(dst, 'saved_model.pb'), 'wb') as f:
      f.write(b'half')
    raise OSError('disk full (simulated)')

  monkeypatch.setattr(pusher, 'copy_model', copy_then_fail)
  with pytest.raises(OSError, match='simulated'):
    run_pusher(model_uris[0], 1, str(serving_dir), str(tmp_path / 'pushed'))
  assert snapshot(str(serving_dir)) == before


def test_a_model_that_is_not_blessed_changes_nothing(model_uris, tmp_path):
  serving_dir = str(tmp_path / 'serving')
  run_pusher(model_uris[0], 1, serving_dir, str(tmp_path / 'p1'))
  before = snapshot(serving_dir)
  mtimes = {p: os.stat(os.path.join(serving_dir, p)).st_mtime_ns for p in before}
  pushed = run_pusher(model_uris[1], 0, serving_dir, str(tmp_path / 'p2'))
  assert pushed.get_int_custom_property('pushed') == 0
  assert not pushed.has_custom_property('pushed_version')
  assert snapshot(serving_dir) == before
  assert {p: os.stat(os.path.join(serving_dir, p)).st_mtime_ns for p in before} == mtimes


def test_not_blessed_does_not_even_create_the_serving_dir(model_uris, tmp_path):
  serving_dir = str(tmp_path / 'serving')
  run_pusher(model_uris[0], 0, serving_dir, str(tmp_path / 'p1'))
  assert not os.path.exists(serving_dir)


def test_pushing_the_same_model_again_reports_the_existing_version(model_uris, tmp_path):
  serving_dir = str(tmp_path / 'serving')
  first = run_pusher(model_uris[0], 1, serving_dir, str(tmp_path / 'p1'))
  again = run_pusher(model_uris[0], 1, serving_dir, str(tmp_path / 'p2'))
  assert len(numeric_entries(serving_dir)) == 1
  for name in ('pushed_version', 'pushed_destination'):
    assert again.get_string_custom_property(name) == first.get_string_custom_property(name)
  assert again.get_int_custom_property('pushed') == 1
  other = run_pusher(model_uris[1], 1, serving_dir, str(tmp_path / 'p3'))
  assert int(other.get_string_custom_property('pushed_version')) > \
      int(first.get_string_custom_property('pushed_version'))
  assert len(numeric_entries(serving_dir)) == 2


def test_a_model_with_a_tflite_copy_gets_it_beside_the_version(model_uris, tmp_path):
  import shutil
  from components import tflite_export
  uri = str(tmp_path / 'model')
  shutil.copytree(model_uris[0], uri)
  os.makedirs(os.path.join(uri, tflite_export.TFLITE_DIR))
  with open(os.path.join(uri, tflite_export.TFLITE_DIR, tflite_export.MODEL_FILE), 'wb') as f:
    f.write(b'TFL3')
  serving_dir = str(tmp_path / 'out' / 'serving')
  pushed = run_pusher(uri, 1, serving_dir, str(tmp_path / 'pushed'))
  version = pushed.get_string_custom_property('pushed_version')
  assert os.listdir(tmp_path / 'out' / 'tflite') == [version]
  assert os.listdir(serving_dir) == [version]  # TF Serving's directory holds versions only
  # A model without one (every other test here) leaves no tflite/ directory.
  run_pusher(model_uris[1], 1, str(tmp_path / 'plain'), str(tmp_path / 'pushed2'))
  assert sorted(os.listdir(tmp_path)) == ['model', 'out', 'plain', 'pushed', 'pushed2']


def test_the_pipeline_uses_this_executor(tmp_path):
  from tfx_pipeline import config, pipeline
  import dataclasses
  cfg = dataclasses.replace(config.smoke(), pipeline_root=str(tmp_path / 'root'),
                            serving_dir=str(tmp_path / 'serving'))
  nodes = {c.id: c for c in pipeline.create_pipeline(cfg).components}
  assert nodes['Pusher'].executor_spec.executor_class is pusher.Executor


# A full disk: tests/conftest.py's `small_disk` is a 4 MB tmpfs (root only).

def test_full_disk_a_model_bigger_than_the_free_space_is_refused_before_writing(
    model_uris, small_disk, tmp_path):
  serving_dir = os.path.join(small_disk, 'serving')
  first = run_pusher(model_uris[0], 1, serving_dir, str(tmp_path / 'p1'))
  filler = fixtures.fill_disk(small_disk, leave=64 * 1024)
  before = snapshot(serving_dir)
  big = str(tmp_path / 'big')
  fixtures.fake_model_dir(os.path.join(big, 'Format-Serving'), 1024 * 1024)
  with pytest.raises(disk_space.DiskFullError) as info:
    run_pusher(big, 1, serving_dir, str(tmp_path / 'p2'))
  message = str(info.value)
  assert message.startswith(f'the disk is full: {serving_dir} (')
  assert 'KB free of 4.0 MB' in message and 'the model needs 1.0 MB' in message
  assert snapshot(serving_dir) == before  # no version, no temporary copy

  os.remove(filler)  # space is back: the same push works
  pushed = run_pusher(big, 1, serving_dir, str(tmp_path / 'p3'))
  version = pushed.get_string_custom_property('pushed_version')
  assert int(version) > int(first.get_string_custom_property('pushed_version'))
  assert snapshot(os.path.join(serving_dir, version))['variables/variables.data-00000-of-00001'] \
      == snapshot(os.path.join(big, 'Format-Serving'))['variables/variables.data-00000-of-00001']


def test_full_disk_a_copy_that_runs_out_of_space_leaves_no_version_and_no_temp_dir(
    model_uris, small_disk, tmp_path, monkeypatch):
  serving_dir = os.path.join(small_disk, 'serving')
  pusher.push(os.path.join(model_uris[0], 'Format-Serving'), serving_dir)
  before = snapshot(serving_dir)
  big = fixtures.fake_model_dir(str(tmp_path / 'big'), 6 * 1024 * 1024)  # more than the disk
  # The disk fills up during the copy (another writer): the check before it saw room.
  monkeypatch.setattr(pusher, 'check_space', lambda model_path, serving_dir: None)
  with pytest.raises(disk_space.DiskFullError) as info:
    pusher.push(big, serving_dir)
  assert str(info.value).startswith(f'the disk is full: {serving_dir} (')
  assert 'no version was written' in str(info.value)
  assert disk_space.is_disk_full(info.value.__cause__)  # TensorFlow's own ENOSPC error
  assert snapshot(serving_dir) == before
  assert disk_space.free_bytes(small_disk) > 3 * 2**20  # the partial copy's space is back

  small = fixtures.fake_model_dir(str(tmp_path / 'small'), 512 * 1024)
  version = pusher.push(small, serving_dir)
  assert sorted(numeric_entries(serving_dir))[-1] == str(version)
  assert not [n for n in os.listdir(serving_dir) if n.startswith('.')]


# Leftovers of a push that died.

def test_temp_dir_names_say_whose_they_are():
  name = pusher.temp_name('build-host-7', 4242)
  assert name.startswith('.push-tmp-build-host-7-4242-')
  assert pusher.temp_owner(name) == ('build-host-7', 4242)
  assert pusher.temp_owner('.push-tmp-0123456789abcdef') is None  # the old unnamed form
  assert pusher.temp_owner('1700000000') is None
  alive = {4242}.__contains__
  assert pusher.is_stale(pusher.temp_name('here', 99), 10, 'here', alive)  # pid gone
  assert not pusher.is_stale(pusher.temp_name('here', 4242), 10, 'here', alive)  # still copying
  assert not pusher.is_stale(pusher.temp_name('there', 99), 10, 'here', alive)  # cannot tell
  assert not pusher.is_stale('.push-tmp-0123456789abcdef', 10, 'here', alive)
  assert pusher.is_stale(pusher.temp_name('there', 99), pusher.STALE_TEMP_SECONDS + 1, 'here',
                         alive)


def dead_pid() -> int:
  child = subprocess.Popen(['true'])
  child.wait()
  return child.pid


def test_the_next_push_removes_dead_temp_dirs_and_keeps_live_ones(model_uris, tmp_path):
  serving_dir = tmp_path / 'serving'
  host = socket.gethostname()
  dead = pusher.temp_name(host, dead_pid())
  live = pusher.temp_name(host, os.getpid())  # a push of this very process, mid-copy
  elsewhere = pusher.temp_name('another-host', 1)  # on another host: not ours to judge
  ancient = pusher.temp_name('another-host', 2)
  for name in (dead, live, elsewhere, ancient):
    (serving_dir / name / 'variables').mkdir(parents=True)
    (serving_dir / name / 'variables' / 'part').write_bytes(b'half a model')
  day_and_more = time.time() - pusher.STALE_TEMP_SECONDS - 60
  os.utime(serving_dir / ancient, (day_and_more, day_and_more))

  run_pusher(model_uris[0], 1, str(serving_dir), str(tmp_path / 'p1'))
  left = sorted(n for n in os.listdir(serving_dir) if not n.isdigit())
  assert left == sorted([live, elsewhere])
  assert len(numeric_entries(str(serving_dir))) == 1


def test_a_push_killed_mid_copy_is_cleaned_up_by_the_next_push(model_uris, tmp_path,
                                                              monkeypatch):
  serving_dir = str(tmp_path / 'serving')
  model = os.path.join(model_uris[0], 'Format-Serving')

  def copy_then_die(src, dst):  # as far as the disk can tell, a SIGKILL mid-copy
    os.makedirs(os.path.join(dst, 'variables'))
    raise SystemExit('killed')

  monkeypatch.setattr(pusher, 'copy_model', copy_then_die)
  monkeypatch.setattr(pusher.shutil, 'rmtree', lambda *a, **k: None)  # nothing cleans up
  with pytest.raises(SystemExit):
    pusher.push(model, serving_dir)
  leftover, = os.listdir(serving_dir)
  assert pusher.temp_owner(leftover) == (socket.gethostname(), os.getpid())
  os.rename(os.path.join(serving_dir, leftover), os.path.join(
      serving_dir, pusher.temp_name(socket.gethostname(), dead_pid())))  # that process is gone
  monkeypatch.undo()

  version = pusher.push(model, serving_dir)
  assert os.listdir(serving_dir) == [str(version)]
