"""The second day, end to end with the smoke preset on span folders.

Span 1 is a first run. Span 2 arrives: ExampleGen ingests only it, training
reads the window of both spans, the Tuner reuses the finished search and the
Trainer warm-starts from the blessed model. Span 3 teaches a candidate
nothing of one class: the per-class gate refuses it and nothing is pushed.
"""

import json
import re
import os
import shutil
import time

import pytest

import fixtures
from tfx_pipeline import run_summary
from test_pipeline_e2e import run_pipeline

CLASSES = fixtures.CLASS_NAMES[:4]


def runs_of(days_, span):
  """{node id: ComponentRun} of the run of day `span` (not of the runs after it)."""
  root = days_['root']
  since = days_[span][0]
  later = [days_[k][0] for k in (1, 2, 3, 'rerun') if k in days_ and days_[k][0] > since]
  until = min(later, default=float('inf'))
  return {r.node_id: r for r in run_summary.component_runs(
      os.path.join(root, 'metadata.sqlite'), 'cifar10-alexnet', since)
          if r.execution.create_time_since_epoch / 1e3 < until}


def trial_dirs(root):
  return sorted(d for _, dirs, _ in os.walk(os.path.join(root, 'tuner_state'))
                for d in dirs if d.startswith('trial_'))


def best_class_of_blessed_model(days):
  """The label the last blessed model classifies best on day 2's eval data (>= 0.9)."""
  evaluator = runs_of(days, 2)['Evaluator'].execution
  store = run_summary.open_store(os.path.join(days['root'], 'metadata.sqlite'))
  evaluation, = run_summary.artifacts_by_key(store, evaluator.id)['evaluation']
  accuracy = run_summary.class_accuracy(evaluation.uri)
  blessed = accuracy['candidate'] if 'Evaluator: BLESSED' in days[2][1] else \
      accuracy['baseline']
  label = max(blessed, key=blessed.get)
  assert blessed[label] >= 0.9, f'no class the blessed model gets right: {blessed}'
  return label


@pytest.fixture(scope='module')
def days(tmp_path_factory):
  """(base, root, serving, days): days[span] = (since, stdout, trial dirs, pushed versions),
  days['root'], days['forgotten'] (the label span 3 leaves out of train)."""
  tmp = tmp_path_factory.mktemp('day2')
  base, root, serving = str(tmp / 'in'), str(tmp / 'root'), str(tmp / 'serving')
  pattern = os.path.join(base, 'span-{SPAN}')
  days = {}
  for span in (1, 2):
    fixtures.make_image_tree(os.path.join(base, f'span-{span}'), per_class=30,
                             classes=CLASSES, seed=span)
    since = time.time()
    out = run_pipeline(pattern, root, serving, '--epochs', '6')
    days[span] = (since, out, trial_dirs(root), sorted(os.listdir(serving)))
  # The same command again with no new span: nothing to learn, nothing re-trained.
  since = time.time()
  out = run_pipeline(pattern, root, serving, '--epochs', '6')
  days['rerun'] = (since, out, trial_dirs(root), sorted(os.listdir(serving)))
  # Span 3: one class only in eval; trained on span 3 alone, from scratch, the
  # candidate never sees it. The class is one the blessed model gets right.
  days['root'] = root
  forgotten = best_class_of_blessed_model(days)
  span3 = os.path.join(base, 'span-3')
  fixtures.make_image_tree(span3, per_class=30, classes=CLASSES, seed=3,
                           splits=('train', 'eval'))
  shutil.rmtree(os.path.join(span3, 'train', CLASSES[forgotten]))
  since = time.time()
  # Its label mix drifts: --on-drift warn lets it through to the Evaluator.
  out = run_pipeline(pattern, root, serving, '--epochs', '6', '--train-spans', '1',
                     '--from-scratch', '--on-drift', 'warn', '--max-regression', '1',
                     '--max-class-regression', '0.3')
  days[3] = (since, out, trial_dirs(root), sorted(os.listdir(serving)))
  days['forgotten'] = forgotten
  days['root'] = root
  return base, root, serving, days


@pytest.mark.slow
def test_day_two_ingests_span_2_and_trains_on_the_window(days):
  _, root, _, days_ = days
  _, out, _, _ = days_[2]
  runs = runs_of(days_, 2)
  assert runs['ImageExampleGen'].state == 'done'
  store = run_summary.open_store(os.path.join(root, 'metadata.sqlite'))
  ingested, = run_summary.artifacts_by_key(store, runs['ImageExampleGen'].execution.id)[
      'examples']
  assert ingested.custom_properties['span'].int_value == 2
  window = run_summary.artifacts_by_key(store, runs['Trainer'].execution.id,
                                        inputs=True)['examples']
  assert sorted(a.custom_properties['span'].int_value for a in window) == [1, 2]
  assert ingested.id in {a.id for a in window}
  assert 'Span: ingested span 2' in out and 'Training window: spans [1, 2]' in out
  assert 'Data gate: passed: no schema anomaly; no drift (against span 1)' in out
  assert 'Data gate: passed: no schema anomaly; no drift (no previous span' in days_[1][1]


@pytest.mark.slow
def test_day_two_reuses_the_search_and_warm_starts_from_the_blessed_model(days):
  _, root, _, days_ = days
  _, out, trials, _ = days_[2]
  assert trials == days_[1][2]  # no new trial: the finished search was reused
  assert 'Tuner: reused the search' in out
  trainer = runs_of(days_, 2)['Trainer'].execution
  store = run_summary.open_store(os.path.join(root, 'metadata.sqlite'))
  inputs = run_summary.artifacts_by_key(store, trainer.id, inputs=True)
  blessed_model, = inputs['base_model']
  assert 'Trainer/model/' in blessed_model.uri
  assert 'Trainer: warm start from the blessed model' in out and ', 1 epochs' in out
  assert 'Trainer: cold start: no blessed model yet, 6 epochs' in days_[1][1]
  evaluator = runs_of(days_, 2)['Evaluator'].execution
  eval_config = json.loads(evaluator.custom_properties['eval_config'].string_value)
  assert [s.get('feature_keys') for s in eval_config['slicing_specs']] == [None, ['label']]


@pytest.mark.slow
def test_a_rerun_without_a_new_span_retrains_nothing(days):
  _, _, _, days_ = days
  _, out, _, _ = days_['rerun']
  states = {n: r.state for n, r in runs_of(days_, 'rerun').items()}
  for node in ('ImageExampleGen', 'DataGate', 'Transform', 'Tuner', 'Trainer'):
    assert states[node] == 'cached', (node, states)
  assert 'Span: ingested span 2 (cached)' in out


@pytest.mark.slow
def test_a_candidate_that_never_saw_a_class_is_not_pushed(days):
  _, _, _, days_ = days
  _, out, _, pushed = days_[3]
  forgotten = days_['forgotten']
  assert 'Evaluator: NOT blessed, nothing pushed.' in out, out[-1500:]
  assert f'class {forgotten} ({CLASSES[forgotten]}) sparse_categorical_accuracy change ' \
         'vs baseline -' in out
  assert 'Trainer: cold start: warm start is off (--from-scratch)' in out
  assert re.search(r'Data gate: drift \(against span 2, warning only \(--on-drift warn\)\): '
                   r'.*label: The Linfty distance between current and previous is 0\.2[45]', out)
  # (A quarter of the previous span's train images had that label; none of span 3's.)
  assert pushed == days_['rerun'][3]  # no new version
