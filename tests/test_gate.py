"""The Evaluator's gate as TFMA config: overall floor and regression, and per class (by label)."""

import dataclasses

from tfx_pipeline import config
from tfx_pipeline import pipeline
from tfx_pipeline import run_summary


def gate_config(**changes):
  base = config.cpu()
  return dataclasses.replace(base, gate=dataclasses.replace(base.gate, **changes))


def test_eval_data_is_sliced_by_label_and_each_class_has_a_regression_limit():
  eval_config = pipeline.eval_config(gate_config(max_class_regression=0.05,
                                                 min_class_accuracy=0.5))
  assert [list(s.feature_keys) for s in eval_config.slicing_specs] == [[], ['label']]
  accuracy = eval_config.metrics_specs[0].metrics[0]
  per_class, = accuracy.per_slice_thresholds
  assert [list(s.feature_keys) for s in per_class.slicing_specs] == [['label']]
  change = per_class.threshold.change_threshold
  assert -0.0501 < change.absolute.value < -0.05
  assert per_class.threshold.value_threshold.lower_bound.value == 0.5


def test_a_class_limit_of_one_still_slices_but_gates_overall_only():
  eval_config = pipeline.eval_config(gate_config(max_class_regression=1.0))
  assert [list(s.feature_keys) for s in eval_config.slicing_specs] == [[], ['label']]
  assert not eval_config.metrics_specs[0].metrics[0].per_slice_thresholds


def test_slice_words_name_the_class():
  from tensorflow_model_analysis.proto import metrics_for_slice_pb2
  key = metrics_for_slice_pb2.SliceKey(single_slice_keys=[
      metrics_for_slice_pb2.SingleSliceKey(column='label', int64_value=3)])
  assert run_summary.slice_words(key, ['a', 'b', 'c', 'cat']) == 'class 3 (cat)'
  assert run_summary.slice_words(metrics_for_slice_pb2.SliceKey()) == 'overall'
