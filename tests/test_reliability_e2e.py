"""Unattended-run behaviour, end to end: resume after SIGKILL, and the gate.

One pipeline root goes through these runs, in order:
  1. a weak model (learning rate 1e-4, one epoch, no tuning): blessed (no baseline), version 1;
  2. a normal smoke run, SIGKILLed in the Trainer's second epoch, then run again:
     finished components hit the cache, the Trainer resumes from its last epoch,
     and the better model becomes version 2;
  3. the weak configuration again: worse than the last blessed model, not pushed;
  4. any model under --min-accuracy 1.01: not blessed, serving dir byte-identical.
"""

import hashlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

import fixtures
from tfx_pipeline import run_summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 6
pytestmark = pytest.mark.slow


def command(state, *extra):
  return [sys.executable, 'pipeline_runner.py', '--preset', 'smoke',
          '--image-dir', state['tree'], '--pipeline-root', state['root'],
          '--serving-dir', state['serving'], *extra]


def run(state, *extra, env=None):
  result = subprocess.run(command(state, *extra), cwd=REPO, capture_output=True, text=True,
                          timeout=1200, env=env)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def weak_args(state):
  return ('--no-tune', '--hparams-file', state['weak'], '--epochs', '1')


def tree_digest(path):
  """Hash of every path and byte under `path`."""
  h = hashlib.sha256()
  for dirpath, dirnames, filenames in sorted(os.walk(path)):
    dirnames.sort()
    h.update(os.path.relpath(dirpath, path).encode())
    for name in sorted(filenames):
      h.update(name.encode())
      with open(os.path.join(dirpath, name), 'rb') as f:
        h.update(f.read())
  return h.hexdigest()


def states_since(state, since):
  return {r.node_id: r.state for r in run_summary.component_runs(
      os.path.join(state['root'], 'metadata.sqlite'), 'cifar10-alexnet', since)}


@pytest.fixture(scope='module')
def state(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('reliability')
  weak = tmp / 'weak.json'
  weak.write_text(json.dumps({'learning_rate': 1e-4}))
  return {'tree': fixtures.make_image_tree(str(tmp / 'tree'), per_class=30),
          'root': str(tmp / 'root'), 'serving': str(tmp / 'serving'), 'weak': str(weak)}


def test_1_weak_first_model_is_blessed_and_pushed_and_writes_only_its_dirs(state, tmp_path):
  home, tmp = tmp_path / 'home', tmp_path / 'tmp'
  home.mkdir()
  tmp.mkdir()
  out = run(state, *weak_args(state), env=dict(os.environ, HOME=str(home), TMPDIR=str(tmp)))
  assert 'Evaluator: BLESSED' in out
  assert len(os.listdir(state['serving'])) == 1
  # Nothing outside the pipeline root and the serving dir (e.g. ~/.keras, /tmp).
  assert [str(p) for p in home.rglob('*')] == []
  assert [str(p) for p in tmp.rglob('*')] == []


def test_2_killed_trainer_resumes_and_finished_components_are_cached(state):
  proc = subprocess.Popen(command(state, '--epochs', str(EPOCHS)), cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
  killed_after = None
  for line in proc.stdout:
    if line.startswith(f'Trainer epoch 1/{EPOCHS}'):
      os.killpg(proc.pid, signal.SIGKILL)  # in epoch 2, as a crash would
      killed_after = line
      break
  proc.wait(timeout=60)
  assert killed_after, 'the Trainer never reached its first epoch end'
  assert proc.returncode == -signal.SIGKILL

  since = time.time()
  out = run(state, '--epochs', str(EPOCHS))
  metadata = os.path.join(state['root'], 'metadata.sqlite')
  runs = {r.node_id: r for r in run_summary.component_runs(metadata, 'cifar10-alexnet', since)}
  states = {node: r.state for node, r in runs.items()}
  for node in ('ImageExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
               'DataGate', 'Transform', 'Tuner'):
    assert states[node] == 'cached', (node, states)
  assert states['Trainer'] == 'done'
  epochs = [int(m) for m in re.findall(rf'^Trainer epoch (\d+)/{EPOCHS}', out, re.M)]
  assert epochs and epochs[0] >= 2, f'resumed run trained epochs {epochs}'
  assert epochs[-1] == EPOCHS
  # history.json (and so the report's curves) covers the epochs of both attempts.
  store = run_summary.open_store(metadata)
  model_run = run_summary.artifacts_by_key(store, runs['Trainer'].execution.id)['model_run'][0]
  with open(os.path.join(model_run.uri, 'history.json')) as f:
    assert [row['epoch'] for row in json.load(f)] == list(range(1, EPOCHS + 1))
  assert 'Evaluator: BLESSED' in out, out[-1500:]
  versions = sorted(int(v) for v in os.listdir(state['serving']))
  assert len(versions) == 2 and versions[1] > versions[0]


def disk_usage(path):
  """Bytes under `path`, per top-level entry (a component's outputs, metadata, ...)."""
  sizes = {}
  for p in pathlib.Path(path).rglob('*'):
    if p.is_file():
      top = p.relative_to(path).parts[0]
      sizes[top] = sizes.get(top, 0) + p.stat().st_size
  return sizes


def test_3_worse_model_than_the_last_blessed_is_not_pushed(state):
  before, sizes_before = tree_digest(state['serving']), disk_usage(state['root'])
  since = time.time()
  out = run(state, *weak_args(state))
  assert 'NOT blessed' in out, out[-1500:]
  assert tree_digest(state['serving']) == before
  # A re-run with a cached Trainer adds an evaluation and a report, not another copy
  # of the data or the model: the pipeline root stays bounded.
  sizes = disk_usage(state['root'])
  growth = {k: v - sizes_before.get(k, 0) for k, v in sizes.items()}
  assert sum(growth.values()) < 5e6, (growth, states_since(state, since))


def test_4_accuracy_floor_blocks_every_model(state):
  before = tree_digest(state['serving'])
  out = run(state, '--epochs', str(EPOCHS), '--min-accuracy', '1.01')
  assert 'NOT blessed' in out and '1.01' in out, out[-1500:]
  assert tree_digest(state['serving']) == before
