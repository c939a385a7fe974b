"""The whole pipeline with the smoke preset, end to end: MLMD, push, serving, cache, report.

The runs are the session's shared smoke runs (tests/smoke_runs.py): the first
run on span 1 of a generated tree, and a later run with no new data, which
must hit the cache.
"""

import base64
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from components import features
from tfx_pipeline import onednn
from smoke_runs import CLASSES, PER_CLASS, runs_of

COMPONENTS = {'ImageExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
              'PreviousSpanStatistics', 'DataGate', 'WarmStartModelResolver',
              'Transform', 'Tuner', 'Trainer', 'LatestBlessedModelResolver', 'Evaluator',
              'ServingCheck', 'Pusher'}
UPSTREAM = COMPONENTS - {'LatestBlessedModelResolver', 'PreviousSpanStatistics',
                         'WarmStartModelResolver', 'Evaluator', 'ServingCheck', 'Pusher'}


@pytest.fixture
def first_run(smoke_days):
  """(span-1 tree, pipeline root, serving dir, the first day's snapshot, all days)."""
  span1 = smoke_days['pattern'].replace('{SPAN}', '1')
  return span1, smoke_days['root'], smoke_days['serving'], smoke_days[1], smoke_days


@pytest.mark.slow
def test_every_component_executed_in_mlmd(first_run):
  _, _, _, day, days = first_run
  out = day.out
  assert {node: r.state for node, r in runs_of(days, 1).items()} == \
      {c: 'done' for c in COMPONENTS}
  assert 'Evaluator: BLESSED' in out and 'Pushed: ' in out
  assert re.search(r'Evaluator: BLESSED\. eval accuracy [01]\.\d{4}\. ', out), out[-800:]
  for node in ('ImageExampleGen started', 'Trainer started', 'Trainer done in'):
    assert node in out  # progress lines
  assert 'Serving check: passed: with oneDNN off and on, it loads in a TF1 session' in out
  # Training compute, from the records the Tuner and the Trainer wrote (models/flops.py).
  assert re.search(r'^Compute: Tuner \d[.\d]* TFLOP, Trainer \d[.\d]* TFLOP, total ', out, re.M)
  assert 'not recorded' not in out and 'Compute: Tuner 0.0 TFLOP' not in out
  # The runner's oneDNN default (tfx_pipeline/onednn.py), as this environment makes it.
  environ = dict(os.environ)
  onednn.apply(environ)
  assert onednn.describe(environ) in out.splitlines()


def saved_model_cli(*args):
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  result = subprocess.run([cli, *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


@pytest.mark.slow
def test_saved_model_cli_runs_both_signatures_of_the_pushed_version(first_run, tmp_path):
  """saved_model_cli run loads through a TF1 session, as TF Serving does."""
  from components import serving
  tree, _, serving_dir, day, _ = first_run
  version = os.path.join(serving_dir, day.pushed[0])
  shown = saved_model_cli('show', '--dir', version, '--all')
  for name in (features.SERVING_SIGNATURE, features.EXAMPLE_SIGNATURE):
    assert f"signature_def['{name}']" in shown
  jpeg = open(sorted(glob.glob(f'{tree}/train/{CLASSES[0]}/*.jpg'))[0], 'rb').read()
  for signature, name, value in (
      (features.SERVING_SIGNATURE, features.SERVING_INPUT, jpeg),
      (features.EXAMPLE_SIGNATURE, features.EXAMPLE_INPUT, serving.image_example(jpeg))):
    npy = str(tmp_path / f'{name}.npy')
    np.save(npy, np.array([value, value]))  # fixed-width bytes: no pickle needed
    out = saved_model_cli('run', '--dir', version, '--tag_set', 'serve',
                          '--signature_def', signature, '--inputs', f'{name}={npy}')
    assert re.search(r"Result for output key probabilities:\n\[\[", out), out[-1500:]
    assert "Result for output key class_names:\n[b'" in out, out[-1500:]


@pytest.mark.slow
def test_a_version_was_pushed_and_serves_probabilities(first_run):
  import tensorflow as tf
  tree, _, serving, day, _ = first_run
  versions = day.pushed
  assert len(versions) == 1 and versions[0].isdigit()
  model = tf.saved_model.load(os.path.join(serving, versions[0]))
  blobs = [open(p, 'rb').read() for p in sorted(glob.glob(f'{tree}/train/*/0000.jpg'))]
  out = model.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant(blobs))
  probabilities = out[features.PROBABILITIES].numpy()
  assert probabilities.shape == (len(CLASSES), len(CLASSES))
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
  names = [n.decode() for n in out[features.CLASS_NAMES].numpy()]
  assert set(names) <= set(CLASSES)


@pytest.mark.slow
def test_the_pushed_version_has_a_tflite_model_that_agrees_with_it(first_run):
  """The smoke preset's default (dynamic-range) TFLite model, beside the version, on the
  span's images: every class probability within 0.02 of the SavedModel's (a trained
  model; the unit tests hold an untrained one to 5e-3), and the same top class for at
  least 97% of them (a tie within 0.04 may flip)."""
  import tensorflow as tf
  from components import tflite_export
  tree, _, serving, day, _ = first_run
  folder = os.path.join(tflite_export.tflite_root(serving), day.pushed[0])
  with open(os.path.join(folder, tflite_export.LABELS_FILE)) as f:
    assert f.read().splitlines() == list(CLASSES)
  with open(os.path.join(folder, tflite_export.RECORD_FILE)) as f:
    assert json.load(f)['quantization'] == 'dynamic'
  blobs = [open(p, 'rb').read() for p in sorted(glob.glob(f'{tree}/train/*/*'))]
  saved = tf.saved_model.load(os.path.join(serving, day.pushed[0]))
  want = saved.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant(blobs))[
      features.PROBABILITIES].numpy()
  interpreter = tflite_export.Interpreter(os.path.join(folder, tflite_export.MODEL_FILE))
  got = interpreter.predict([tflite_export.pixels(b, 32).numpy() for b in blobs])
  assert got.shape == want.shape == (len(blobs), len(CLASSES))
  assert float(np.max(np.abs(got - want))) <= 0.02
  assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.97


@pytest.mark.slow
def test_the_run_writes_a_self_contained_report(first_run):
  _, root, serving, day, _ = first_run
  out, page = day.out, day.report
  assert f'Report: {os.path.join(root, "report.html")}' in out
  assert f'TensorBoard: tensorboard --logdir {root}' in out
  for section in ('timeline', 'data', 'tuning', 'training', 'evaluation', 'push'):
    assert f'<section id="{section}">' in page
  assert 'class="missing"' not in page  # every component ran and left its outputs
  pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
  assert len(pngs) == 5  # timeline, images per class, trials, curves, confusion matrix
  assert all(base64.b64decode(p).startswith(b'\x89PNG') for p in pngs)
  assert 'src="http' not in page and '<script' not in page
  # Counts are ImageExampleGen's, per split and class; every generated image is there.
  # The first run's artifact: the lowest execution id (later days add spans of their own).
  first = min(glob.glob(f'{root}/ImageExampleGen/examples/*/image_counts.json'),
              key=lambda path: int(os.path.basename(os.path.dirname(path))))
  counts = json.load(open(first))
  train, eval_ = counts['splits']['train'], counts['splits']['eval']
  assert train['written'] + eval_['written'] == len(CLASSES) * PER_CLASS
  assert (f'<td>total</td><td>{train["read"]}</td><td>{train["written"]}</td><td>0</td>'
          f'<td>{eval_["read"]}</td><td>{eval_["written"]}</td><td>0</td>') in page
  assert page.count('<tr class="best">') == 1  # the Tuner's best trial
  assert 'Decision: BLESSED' in page and 'No baseline' in page
  assert os.path.join(serving, day.pushed[0]) in page  # where it was pushed


@pytest.mark.slow
def test_the_pushed_version_carries_its_model_card(first_run):
  _, root, serving, day, days = first_run
  extra = os.path.join(serving, day.pushed[0], 'assets.extra')
  md = open(os.path.join(extra, 'model_card.md')).read()
  page = open(os.path.join(extra, 'model_card.html')).read()
  accuracy = re.search(r'Evaluator: BLESSED\. eval accuracy ([01]\.\d{4})\. ', day.out).group(1)
  for text in (md, page):
    assert accuracy in text  # the figure the run printed
    assert 'BLESSED' in text and 'best trial' in text  # the hyperparameters' source
    for name in CLASSES:  # the class list, the per-class table, the limitations
      assert text.count(name) >= 3, name
    assert 'serving_default' in text and 'serving_tf_example' in text and 'image_bytes' in text
  assert f'Eval accuracy **{accuracy}**' in md
  assert md.startswith(f'# cifar10-alexnet: model card, version {day.pushed[0]}\n')
  assert all(f'| {name} | ' in md for name in CLASSES)  # per-class rows
  pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
  assert len(pngs) == 3  # images per class, curves, confusion matrix
  assert 'src="http' not in page and '<script' not in page
  # A later blessed version's card compares it with the version before it.
  if len(days[2].pushed) > len(day.pushed):
    later = open(os.path.join(serving, days[2].pushed[-1], 'assets.extra',
                              'model_card.md')).read()
    assert '| baseline (latest blessed) |' in later and 'span 1' in later and 'span 2' in later


@pytest.mark.slow
def test_a_run_with_no_new_data_hits_the_cache(smoke_days):
  states = {node: r.state for node, r in runs_of(smoke_days, 'rerun').items()}
  assert {n: states.get(n) for n in UPSTREAM} == {n: 'cached' for n in UPSTREAM}
  # The report of the cached run still finds the cached outputs, and the
  # Evaluator compared the candidate with the last blessed model.
  page = smoke_days['rerun'].report
  for section in ('data', 'tuning', 'training', 'evaluation'):
    body = page.split(f'<section id="{section}">')[1].split('</section>')[0]
    assert 'class="missing"' not in body
  assert 'baseline (latest blessed)' in page and page.count('cached</td>') >= len(UPSTREAM)
