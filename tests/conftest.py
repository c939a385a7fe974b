"""Shared fixtures: generated image trees and a real TFT transform graph built on them."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402

import fixtures  # noqa: E402
import smoke_runs  # noqa: E402

# A skip, xfail or xpass not listed in tests/allowed_skips.txt fails the run.
pytest_plugins = ['skip_allowlist']

IMAGE_SIZE = 32


@pytest.fixture(scope='session')
def image_tree(tmp_path_factory):
  """ROOT/train/<10 classes>/ with 12 images each (JPEG and PNG)."""
  return fixtures.make_image_tree(str(tmp_path_factory.mktemp('tree')), per_class=12)


@pytest.fixture(scope='session')
def transform_output(tmp_path_factory, image_tree):
  """A TFTransformOutput analyzed on the generated tree's images."""
  import glob
  import tensorflow_transform as tft
  paths = sorted(glob.glob(os.path.join(image_tree, 'train', '*', '*')))
  names = sorted(os.listdir(os.path.join(image_tree, 'train')))
  images = [open(p, 'rb').read() for p in paths]
  labels = [names.index(os.path.basename(os.path.dirname(p))) for p in paths]
  from components import transform
  out = transform.analyze_images(images, labels, IMAGE_SIZE,
                                 str(tmp_path_factory.mktemp('transform')))
  return tft.TFTransformOutput(out)


@pytest.fixture(scope='session')
def exported(tmp_path_factory, transform_output):
  """(Keras model, TF2-reloaded export, export dir) of a smoke-size AlexNet."""
  import tensorflow as tf
  from components import serving
  from models import alexnet
  from tfx_pipeline import config
  from tuning.search_space import search_space
  hp = search_space(config.smoke().tune, 'cifar')
  model = alexnet.build_model(hp, 'cifar', 32, 10)
  # Non-trivial BatchNorm statistics, so inference differs from training mode.
  model(tf.random.normal([64, 32, 32, 3]) * 2 + 1, training=True)
  path = serving.export(model, transform_output, fixtures.NUMBERED_CLASSES,
                        str(tmp_path_factory.mktemp('export') / 'model'))
  return model, tf.saved_model.load(path), path


@pytest.fixture
def small_disk(tmp_path):
  """A directory on a 4 MB tmpfs of its own: a disk that fills up for real.

  Mounting needs root (CI runs as root); without root, or where a container
  forbids the mount, the test skips (listed in tests/allowed_skips.txt).
  """
  import subprocess
  if os.geteuid() != 0:
    pytest.skip('mounting a tmpfs needs root')
  disk = tmp_path / 'disk'
  disk.mkdir()
  mount = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={fixtures.SMALL_DISK_BYTES}',
                          'tmpfs', str(disk)], capture_output=True, text=True)
  if mount.returncode != 0:
    pytest.skip(f'cannot mount a tmpfs here: {mount.stderr.strip()}')
  try:
    yield str(disk)
  finally:
    if subprocess.run(['umount', str(disk)]).returncode != 0:
      subprocess.run(['umount', '-l', str(disk)], check=True)  # still open somewhere


@pytest.fixture(scope='session')
def tf1_exported(exported):
  """The `exported` model loaded as TF Serving loads it (fixtures.Tf1Model)."""
  model = fixtures.Tf1Model(exported[2])
  yield model
  model.close()


@pytest.fixture(scope='session')
def smoke_days(tmp_path_factory):
  """The four shared smoke runs of tests/smoke_runs.py (about 7 minutes on 2 cores)."""
  return smoke_runs.make_days(str(tmp_path_factory.mktemp('days')))


# The longest groups, longest first (`--durations`, 2026-11-30). xdist hands
# groups out in collection order, so these start first and the short files
# fill in around them instead of one long group running alone at the end.
LONGEST_GROUPS = ('smoke_days', 'test_reliability_e2e.py', 'test_module_chain.py',
                  'test_scale_out.py', 'test_onednn.py', 'test_portable_runner.py',
                  'test_data_gate.py', 'test_search_space.py')


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (it tags node ids with them)
def pytest_collection_modifyitems(config, items):
  """Keeps what shares a fixture in one process when `make test` runs on several (pytest-xdist).

  `--dist loadgroup` sends each group to one worker, in order. A group is a
  whole test file (its module-scoped fixtures and ordered tests stay
  together), except the files that read the shared smoke runs: those form one
  group, so the four runs are made once, not once per worker. The longest
  groups go first; within a group the order stays the files' own.
  """
  uses_smoke_runs = {item.path for item in items if 'smoke_days' in item.fixturenames}
  groups = {}
  for item in items:
    groups[item] = 'smoke_days' if item.path in uses_smoke_runs else item.path.name
    item.add_marker(pytest.mark.xdist_group(groups[item]))
  rank = {group: i for i, group in enumerate(LONGEST_GROUPS)}
  items.sort(key=lambda item: rank.get(groups[item], len(rank)))  # stable


def pytest_report_header(config):
  """Which oneDNN setting this run's TensorFlow uses (tests/test_onednn.py runs the other)."""
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  source = 'TF_ENABLE_ONEDNN_OPTS' if os.environ.get('TF_ENABLE_ONEDNN_OPTS') else "the CPU's default"
  return f'TensorFlow oneDNN kernels: {"on" if _pywrap_util_port.IsMklEnabled() else "off"} ({source})'
