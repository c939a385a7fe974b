"""The second day, end to end with the smoke preset on span folders.

The runs are the session's shared smoke runs (tests/smoke_runs.py). Span 1 is
a first run. Span 2 arrives: ExampleGen ingests only it, training reads the
window of both spans, the Tuner reuses the finished search and the Trainer
warm-starts from the blessed model. Span 3 teaches a candidate nothing of one
class: the per-class gate refuses it and nothing is pushed.
"""

import json
import re

import pytest

from smoke_runs import CLASSES, runs_of, store_of
from tfx_pipeline import run_summary


@pytest.mark.slow
def test_day_two_ingests_span_2_and_trains_on_the_window(smoke_days):
  days = smoke_days
  out = days[2].out
  runs = runs_of(days, 2)
  assert runs['ImageExampleGen'].state == 'done'
  store = store_of(days)
  ingested, = run_summary.artifacts_by_key(store, runs['ImageExampleGen'].execution.id)[
      'examples']
  assert ingested.custom_properties['span'].int_value == 2
  window = run_summary.artifacts_by_key(store, runs['Trainer'].execution.id,
                                        inputs=True)['examples']
  assert sorted(a.custom_properties['span'].int_value for a in window) == [1, 2]
  assert ingested.id in {a.id for a in window}
  assert 'Span: ingested span 2' in out and 'Training window: spans [1, 2]' in out
  assert 'Data gate: passed: no schema anomaly; no drift (against span 1)' in out
  assert 'Data gate: passed: no schema anomaly; no drift (no previous span' in days[1].out


@pytest.mark.slow
def test_day_two_reuses_the_search_and_warm_starts_from_the_blessed_model(smoke_days):
  days = smoke_days
  out = days[2].out
  assert days[2].trials == days[1].trials  # no new trial: the finished search was reused
  assert 'Tuner: reused the search' in out
  assert re.search(r'^Compute: Tuner 0\.0 TFLOP \(nothing trained\), Trainer \d', out, re.M), \
      out[-1500:]
  trainer = runs_of(days, 2)['Trainer'].execution
  store = store_of(days)
  inputs = run_summary.artifacts_by_key(store, trainer.id, inputs=True)
  blessed_model, = inputs['base_model']
  assert 'Trainer/model/' in blessed_model.uri
  assert 'Trainer: warm start from the blessed model' in out and ', 1 epochs' in out
  assert ('Trainer: cold start: no blessed model of an earlier span '
          '(a plain image tree never warm-starts), 6 epochs') in days[1].out
  replay = re.search(r'^Trainer: replay: each warm epoch trains on the (\d+) new examples and '
                     r'a fresh 50% sample of the (\d+) the base model saw \((\d+) of (\d+)\)',
                     out, re.M)
  assert replay, out[-1500:]
  new, seen, per_epoch, window = map(int, replay.groups())
  assert new > 0 and seen > 0 and new + seen == window and per_epoch == new + round(seen / 2)
  assert re.search(r'^Trainer: warm start from the blessed model \S+, 1 epochs; replay: each warm',
                   out, re.M), out[-1500:]  # the run summary's path line
  assert 'Trainer: replay' not in days[1].out
  evaluator = runs_of(days, 2)['Evaluator'].execution
  eval_config = json.loads(evaluator.custom_properties['eval_config'].string_value)
  assert [s.get('feature_keys') for s in eval_config['slicing_specs']] == [None, ['label']]


@pytest.mark.slow
def test_a_rerun_without_a_new_span_retrains_nothing(smoke_days):
  days = smoke_days
  out = days['rerun'].out
  states = {n: r.state for n, r in runs_of(days, 'rerun').items()}
  for node in ('ImageExampleGen', 'DataGate', 'Transform', 'Tuner', 'Trainer'):
    assert states[node] == 'cached', (node, states)
  assert 'Span: ingested span 2 (cached)' in out


@pytest.mark.slow
def test_a_candidate_that_never_saw_a_class_is_not_pushed(smoke_days):
  days = smoke_days
  out, pushed = days[3].out, days[3].pushed
  forgotten = days['forgotten']
  assert 'Evaluator: NOT blessed, nothing pushed.' in out, out[-1500:]
  assert f'class {forgotten} ({CLASSES[forgotten]}) sparse_categorical_accuracy change ' \
         'vs baseline -' in out
  assert 'Trainer: cold start: warm start is off (--from-scratch)' in out
  assert re.search(r'Data gate: drift \(against span 2, warning only \(--on-drift warn\)\): '
                   r'.*label: The Linfty distance between current and previous is 0\.2[45]', out)
  # (A quarter of the previous span's train images had that label; none of span 3's.)
  assert pushed == days['rerun'].pushed  # no new version
