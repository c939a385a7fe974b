"""Batch inference in the pipeline, end to end: day 3's `--infer-dir` branch.

The run is the session's shared smoke run of span 3 (tests/smoke_runs.py):
its candidate is refused, so the BulkInferrer scores the folder with the
latest blessed model of an earlier day. One JSON Lines row per good image,
the bad files named with their reasons and counted.
"""

import json
import os
import re

import pytest

from smoke_runs import CLASSES, runs_of, store_of
from tfx_pipeline import run_summary


@pytest.fixture
def inference(smoke_days):
  """(day 3's stdout, the BulkInferrer's InferenceResult artifact, expected files, days)."""
  days = smoke_days
  runs = runs_of(days, 3)
  assert runs['FolderExampleGen'].state == 'done' and runs['BulkInferrer'].state == 'done'
  result, = run_summary.artifacts_by_key(store_of(days), runs['BulkInferrer'].execution.id)[
      'inference_result']
  return days[3].out, result, days['infer'], days


def read_rows(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_one_row_per_good_image_with_the_top_k(inference):
  out, result, expected, days = inference
  path = os.path.join(result.uri, 'predictions.jsonl')
  assert path.startswith(days['root'] + os.sep)  # under the pipeline root
  rows = read_rows(path)
  assert sorted(r['path'] for r in rows) == sorted(expected['good'])  # each once, none bad
  for row in rows:
    assert row['class'] in CLASSES and row['class_id'] == CLASSES.index(row['class'])
    ranked = row['top_k']
    assert len(ranked) == 3 and ranked[0]['class'] == row['class']
    assert ranked[0]['probability'] == row['probability']
    probabilities = [r['probability'] for r in ranked]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert len({r['class'] for r in ranked}) == 3
  assert f'Predictions: {len(rows)} images scored by ' in out
  assert path in out


@pytest.mark.slow
def test_bad_files_are_named_with_their_reason_and_counted(inference):
  out, result, expected, _ = inference
  with open(os.path.join(result.uri, 'skipped.txt')) as f:
    skipped = dict(line.rstrip('\n').split('\t') for line in f)
  assert set(skipped) == set(expected['bad'])  # .DS_Store is hidden: not a file to score
  for path, reason in expected['bad'].items():
    assert re.search(reason, skipped[path]), (path, skipped[path])
    assert f'  {path}: {skipped[path]}' in out
  assert f'Predictions: {len(expected["bad"])} files skipped' in out
  assert result.custom_properties['skipped'].int_value == len(expected['bad'])


@pytest.mark.slow
def test_a_refused_candidate_leaves_the_folder_to_the_latest_blessed_model(inference):
  out, result, _, days = inference
  assert 'Evaluator: NOT blessed' in out
  store = store_of(days)
  runs = runs_of(days, 3)
  inputs = run_summary.artifacts_by_key(store, runs['BulkInferrer'].execution.id, inputs=True)
  model, = inputs['model']
  blessing, = inputs['model_blessing']
  assert blessing.custom_properties['blessed'].int_value == 1
  today, = run_summary.artifacts_by_key(store, runs['Trainer'].execution.id)['model']
  assert model.id != today.id and model.id < today.id  # an earlier day's model
  assert result.custom_properties['scored_by'].string_value == model.uri
  assert f'images scored by {model.uri}' in out
