"""ServingCheck: the model is loaded the way TF Serving loads it before anything is pushed.

TF Serving imports the graph into a TF1 session, runs the restore op and the
init op, then replays the warm-up file; TF2's `tf.saved_model.load` hides
exports that fail there. These tests run the project's export and a
deliberately broken one (a Keras 3 model tracked by a tf.Module, the export
TF Serving rejects with "Could not find variable") through that path.
"""

import json
import os
import threading

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as keys

from components import features, pusher, serving
from components.serving_check import check as check_lib
from components.serving_check import executor as check_executor


class KerasTrackingModule(serving.ServingModule):
  """The export before the fix: the Keras 3 model itself is tracked, not its tf.Variables."""

  def __init__(self, model, tft_output, class_names):
    super().__init__(model, tft_output, class_names)
    del self.model_variables
    self.model = model


@pytest.fixture(scope='module')
def broken_export(tmp_path_factory, exported, transform_output):
  model, _, _ = exported
  path = str(tmp_path_factory.mktemp('broken') / 'Format-Serving')
  module = KerasTrackingModule(model, transform_output, [f'c{i}' for i in range(10)])
  tf.saved_model.save(module, path, signatures=serving.signatures(module))
  serving.write_warmup_file(path, serving.warmup_requests(serving.warmup_batches()))
  # TF2's loader is fooled: the signature answers.
  out = tf.saved_model.load(path).signatures[features.SERVING_SIGNATURE](
      image_bytes=tf.constant(serving.warmup_batches()[0]))
  assert out[features.PROBABILITIES].shape == (1, 10)
  return os.path.dirname(path)


def model_artifact(uri):
  model = standard_artifacts.Model()
  model.uri = uri
  return model


def run_serving_check(model_uri, out_uri, timeout=300):
  blessing = standard_artifacts.InfraBlessing()
  blessing.uri = out_uri
  check_executor.Executor().Do({'model': [model_artifact(model_uri)]}, {'blessing': [blessing]},
                               {'timeout_seconds': timeout, 'code_digest': 'test'})
  return blessing


def test_the_tf1_loader_loads_the_export_and_replays_its_warmup(exported):
  _, _, path = exported
  result = check_lib.check(path)
  assert result.ok, result.failure
  assert len(result.passed) == 4
  assert 'answers its 5 warm-up requests (serving_default, serving_tf_example)' in result.passed


def test_the_tf1_loader_path_refuses_a_keras_tracking_export(broken_export):
  result = check_lib.check(os.path.join(broken_export, 'Format-Serving'))
  assert not result.ok
  assert result.failure.startswith('warm-up request 1 (serving_default, batch 1): '
                                   'Could not find variable'), result.failure


def test_the_executor_blesses_the_export_under_both_onednn_settings(tmp_path, exported):
  _, _, path = exported
  model_uri = tmp_path / 'model'
  model_uri.mkdir()
  os.symlink(path, model_uri / 'Format-Serving')
  blessing = run_serving_check(str(model_uri), str(tmp_path / 'blessing'))
  assert blessing.get_int_custom_property('blessed') == 1
  assert os.path.exists(os.path.join(blessing.uri, 'INFRA_BLESSED'))
  record = json.load(open(os.path.join(blessing.uri, check_executor.RESULT_FILE)))
  assert [(r['onednn'], r['ok']) for r in record['runs']] == [('0', True), ('1', True)]
  assert all('answers an empty batch with empty outputs on both signatures' in r['passed']
             for r in record['runs'])


def test_the_gate_refuses_a_broken_export_and_the_pusher_pushes_nothing(tmp_path, broken_export):
  blessing = run_serving_check(broken_export, str(tmp_path / 'blessing'))
  assert blessing.get_int_custom_property('blessed') == 0
  assert os.path.exists(os.path.join(blessing.uri, 'INFRA_NOT_BLESSED'))
  words = blessing.get_string_custom_property('serving_check')
  assert 'oneDNN off: warm-up request 1' in words and 'Could not find variable' in words

  model_blessing = standard_artifacts.ModelBlessing()
  model_blessing.uri = str(tmp_path / 'model_blessing')
  model_blessing.set_int_custom_property('blessed', 1)  # the Evaluator said yes
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / 'pushed')
  serving_dir = tmp_path / 'serving'
  pusher.Executor().Do(
      {keys.MODEL_KEY: [model_artifact(broken_export)],
       keys.MODEL_BLESSING_KEY: [model_blessing], keys.INFRA_BLESSING_KEY: [blessing]},
      {keys.PUSHED_MODEL_KEY: [pushed]},
      {keys.PUSH_DESTINATION_KEY: json.dumps(
          {'filesystem': {'base_directory': str(serving_dir)}})})
  assert pushed.get_int_custom_property('pushed') == 0
  assert not serving_dir.exists() or not os.listdir(serving_dir)


def test_a_check_that_does_not_answer_in_time_fails(exported):
  _, _, path = exported
  result = check_executor.run_check(path, '0', timeout=0.01)
  assert result == {'onednn': '0', 'ok': False, 'passed': [],
                    'failure': 'no answer within 0 s (load and warm-up replay)'}


def test_both_settings_are_checked_at_once_and_reported_in_order(monkeypatch):
  both_started = threading.Barrier(len(check_executor.ONEDNN_SETTINGS), timeout=10)

  def fake_check(export_dir, onednn, timeout):
    both_started.wait()  # raises BrokenBarrierError if the checks ran one after the other
    return {'onednn': onednn, 'ok': True, 'passed': [export_dir]}

  monkeypatch.setattr(check_executor, 'run_check', fake_check)
  results = check_executor.run_checks('/m', timeout=1)
  assert [r['onednn'] for r in results] == list(check_executor.ONEDNN_SETTINGS)


@pytest.mark.parametrize('outputs, error', [
    ({'probabilities': np.full((2, 10), 0.1), 'class_ids': np.zeros(2),
      'class_names': np.zeros(2)}, None),
    ({'probabilities': np.full((2, 10), 0.1), 'class_ids': np.zeros(1),
      'class_names': np.zeros(2)}, 'class_ids has shape'),
    ({'probabilities': np.full((2, 10), 0.2), 'class_ids': np.zeros(2),
      'class_names': np.zeros(2)}, 'sum to 1'),
    ({'probabilities': np.full((0, 3), 0.2), 'class_ids': np.zeros(0),
      'class_names': np.zeros(0)}, 'expected 2 row'),
])
def test_outputs_need_one_row_per_input_and_probabilities_summing_to_one(outputs, error):
  if error is None:
    check_lib.check_outputs(outputs, 2, 'here')
  else:
    with pytest.raises(check_lib.CheckFailed, match=error):
      check_lib.check_outputs(outputs, 2, 'here')


def test_error_line_keeps_the_informative_line():
  error = tf.errors.FailedPreconditionError(
      None, None, 'Graph execution error:\n\nDetected at node x defined at:\n'
      'Could not find variable conv2_bn/beta. More.\n\t [[{{node y}}]]')
  assert check_lib.error_line(error) == 'Could not find variable conv2_bn/beta. More.'
