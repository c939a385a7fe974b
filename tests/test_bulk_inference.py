"""Batch inference's pieces: the folder walk, the rows, FolderExampleGen, the BulkInferrer
executor (on the `exported` model) and where the pipeline wires them.

The whole branch runs end to end in tests/test_bulk_inference_e2e.py.
"""

import json
import os
import re

import numpy as np
import pytest

import fixtures
from components import features
from components.bulk_inference import example_gen
from components.bulk_inference import inferrer
from components.bulk_inference import rows


def test_a_row_holds_the_top_class_and_the_top_k_largest_first():
  p = np.array([0.1, 0.5, 0.05, 0.3, 0.05])
  row = rows.prediction_row('trip/a.jpg', p, 3, ['a', 'b', 'c', 'd', 'e'])
  assert row == {'path': 'trip/a.jpg', 'class': 'b', 'class_id': 1, 'probability': 0.5,
                 'top_k': [{'class': 'b', 'class_id': 1, 'probability': 0.5},
                           {'class': 'd', 'class_id': 3, 'probability': 0.3},
                           {'class': 'a', 'class_id': 0, 'probability': 0.1}]}
  # Ties go to the lower id; without names a class is its number; k past the classes.
  tied = rows.prediction_row('x', np.array([0.25, 0.25, 0.5]), 5)
  assert [r['class'] for r in tied['top_k']] == ['class 2', 'class 0', 'class 1']
  assert json.loads(rows.jsonl_line(row)) == row and rows.jsonl_line(row).count('\n') == 1


def test_the_walk_takes_every_file_of_any_layout_and_names_what_it_leaves_out(tmp_path):
  folder = tmp_path / 'new'
  expected = fixtures.make_infer_folder(str(folder))
  outside = tmp_path / 'secret.jpg'
  outside.write_bytes(b'outside')
  os.symlink(outside, folder / 'trip' / 'escape.jpg')
  os.symlink(folder / 'trip', folder / 'loop')
  files, left_out = rows.walk_folder(str(folder))
  assert files == sorted(expected['good'] | set(expected['bad']))  # hidden .DS_Store passed over
  assert dict(left_out) == {'trip/escape.jpg': 'symlink out of the folder',
                            'loop': 'symlink (folders are not followed)'}
  assert list(rows.batches(list(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
  assert rows.skipped_line('a b.jpg', 'bad\nthing') == 'a b.jpg\tbad thing\n'


@pytest.fixture(scope='module')
def folder_examples(tmp_path_factory):
  """(folder, expected files, an Examples artifact FolderExampleGen's executor wrote)."""
  from tfx.types import standard_artifacts
  base = tmp_path_factory.mktemp('infer')
  folder = str(base / 'new')
  expected = fixtures.make_infer_folder(folder, fixtures.NUMBERED_CLASSES)
  examples = standard_artifacts.Examples()
  examples.uri = str(base / 'examples')
  os.makedirs(examples.uri)
  example_gen.Executor().Do({}, {'examples': [examples]}, {
      'image_dir': folder, 'max_image_pixels': 4096 * 4096, 'code_digest': ''})
  return folder, expected, examples


def read_examples(examples):
  import tensorflow as tf
  pattern = os.path.join(examples.uri, 'Split-infer', '*')
  records = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type='GZIP')
  return [tf.train.Example.FromString(r) for r in records.as_numpy_iterator()]


def test_folder_example_gen_keeps_the_good_images_and_lists_the_rest(folder_examples):
  folder, expected, examples = folder_examples
  written = read_examples(examples)
  by_path = {e.features.feature[features.ID_KEY].bytes_list.value[0].decode(): e
             for e in written}
  assert set(by_path) == expected['good'] and len(written) == len(expected['good'])
  for path, example in by_path.items():  # the bytes as they are, no label
    assert example.features.feature[features.IMAGE_KEY].bytes_list.value[0] == \
        open(os.path.join(folder, path), 'rb').read()
    assert features.LABEL_KEY not in example.features.feature
  with open(os.path.join(examples.uri, rows.SKIPPED_FILE)) as f:
    skipped = dict(line.rstrip('\n').split('\t') for line in f)
  assert set(skipped) == set(expected['bad'])
  for path, reason in expected['bad'].items():
    assert re.search(reason, skipped[path]), (path, skipped[path])
  props = examples.mlmd_artifact.custom_properties
  assert (props['written'].int_value, props['skipped'].int_value) == \
      (len(expected['good']), len(expected['bad']))
  assert example_gen.image_path(written[0].SerializeToString()) in expected['good']


def run_inferrer(tmp_path, examples, model_dir):
  """The BulkInferrer executor as the pipeline configures it; returns its InferenceResult."""
  from google.protobuf import json_format
  from tfx.types import standard_artifacts
  model = None
  if model_dir:
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / 'model')
    os.makedirs(model.uri)
    os.symlink(model_dir, os.path.join(model.uri, 'Format-Serving'))
  result = standard_artifacts.InferenceResult()
  result.uri = str(tmp_path / 'result')
  os.makedirs(result.uri)
  inferrer.Executor().Do(
      {'examples': [examples], **({'model': [model]} if model else {})},
      {'inference_result': [result]},
      {k: json_format.MessageToJson(v) for k, v in inferrer.specs().items()})
  return result


def test_the_bulk_inferrer_writes_one_row_per_image_as_the_signature_scores_it(
    folder_examples, exported, tmp_path):
  import tensorflow as tf
  folder, expected, examples = folder_examples
  _, loaded, export_dir = exported
  result = run_inferrer(tmp_path, examples, export_dir)
  with open(os.path.join(result.uri, rows.PREDICTIONS_FILE)) as f:
    found = {r['path']: r for r in map(json.loads, f)}
  assert set(found) == expected['good']
  assert tf.io.gfile.glob(os.path.join(result.uri, 'prediction_logs-*.gz'))  # TFX's output too
  paths = sorted(found)
  want = loaded.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant(
      [open(os.path.join(folder, p), 'rb').read() for p in paths]))['probabilities'].numpy()
  for path, probabilities in zip(paths, want):
    row = found[path]
    assert row['class'] == fixtures.NUMBERED_CLASSES[int(np.argmax(probabilities))]
    assert [r['class_id'] for r in row['top_k']] == rows.top_k(probabilities, 3)
    np.testing.assert_allclose([r['probability'] for r in row['top_k']],
                               np.sort(probabilities)[::-1][:3], atol=1e-5)
  props = result.mlmd_artifact.custom_properties
  assert props['scored'].int_value == len(expected['good'])
  assert props['skipped'].int_value == len(expected['bad'])
  with open(os.path.join(result.uri, rows.SKIPPED_FILE)) as f:
    assert {line.split('\t')[0] for line in f} == set(expected['bad'])
  from tfx_pipeline import run_summary
  lines = run_summary.prediction_lines(result.mlmd_artifact)
  assert lines[0] == (f'Predictions: {len(expected["good"])} images scored by '
                      f'{tmp_path / "model"}: {result.uri}/{rows.PREDICTIONS_FILE}')
  assert lines[1] == (f'Predictions: {len(expected["bad"])} files skipped (all in '
                      f'{result.uri}/{rows.SKIPPED_FILE}):')
  assert sorted(line.split(':')[0].strip() for line in lines[2:]) == sorted(expected['bad'])


def test_with_no_blessed_model_nothing_is_scored_and_the_run_goes_on(folder_examples, tmp_path):
  _, expected, examples = folder_examples
  result = run_inferrer(tmp_path, examples, None)
  props = result.mlmd_artifact.custom_properties
  assert props['scored'].int_value == 0 and props['scored_by'].string_value == ''
  assert not os.path.exists(os.path.join(result.uri, rows.PREDICTIONS_FILE))
  from tfx_pipeline import run_summary
  lines = run_summary.prediction_lines(result.mlmd_artifact)
  assert lines[0] == 'Predictions: no blessed model yet: nothing scored'
  assert lines[1].startswith(f'Predictions: {len(expected["bad"])} files skipped')


def test_the_branch_scores_with_the_model_blessed_after_the_evaluator(tmp_path):
  import dataclasses
  from tfx_pipeline import config, pipeline
  folder = tmp_path / 'new'
  folder.mkdir()
  cfg = dataclasses.replace(config.smoke(), pipeline_root=str(tmp_path / 'root'),
                            infer=config.InferConfig(image_dir=str(folder)))
  nodes = {c.id: c for c in pipeline.create_pipeline(cfg).components}
  resolver, bulk = nodes['InferenceModelResolver'], nodes['BulkInferrer']
  assert nodes['Evaluator'] in resolver.upstream_nodes
  assert bulk.executor_spec.executor_class is inferrer.Executor
  assert bulk.inputs['model'].producer_component_id == 'InferenceModelResolver'
  assert bulk.inputs['examples'].producer_component_id == 'FolderExampleGen'
  from google.protobuf import json_format
  from tfx.proto import bulk_inferrer_pb2
  model_spec = json_format.Parse(bulk.exec_properties['model_spec'], bulk_inferrer_pb2.ModelSpec())
  assert list(model_spec.model_signature_name) == [features.EXAMPLE_SIGNATURE]
  assert nodes['FolderExampleGen'].exec_properties['image_dir'] == str(folder)
  plain = {c.id for c in pipeline.create_pipeline(
      dataclasses.replace(cfg, infer=config.InferConfig())).components}
  assert not plain & {'FolderExampleGen', 'InferenceModelResolver', 'BulkInferrer'}
