"""The Evaluator's gate as TFMA config: overall floor and regression, and per class (by label)."""

import dataclasses

from tfx_pipeline import config
from tfx_pipeline import pipeline
from tfx_pipeline import run_summary


def gate_config(**changes):
  base = config.cpu()
  return dataclasses.replace(base, gate=dataclasses.replace(base.gate, **changes))


CLASS_3 = (('label', 3),)  # TFMA's slice key of class 3
OVERALL = ()


def passes(eval_config, slice_key, accuracy, change=0.0):
  """TFMA's own validator on one slice: `accuracy`, and `change` against the baseline."""
  from tensorflow_model_analysis.evaluators import metrics_validator
  from tensorflow_model_analysis.metrics import metric_specs
  thresholds = metric_specs.metric_thresholds_from_metrics_specs(
      eval_config.metrics_specs, eval_config=eval_config)
  metrics = {key: change if key.is_diff else accuracy for key in thresholds}
  return metrics_validator.validate_metrics((slice_key, metrics), eval_config).validation_ok


def test_the_overall_floor_and_regression_limit_hold_for_the_overall_slice_only():
  eval_config = pipeline.eval_config(gate_config(max_regression=0.01, max_class_regression=1.0))
  assert config.cpu().gate.min_accuracy == 0.8
  assert not passes(eval_config, OVERALL, 0.75)
  assert passes(eval_config, OVERALL, 0.85)
  assert not passes(eval_config, OVERALL, 0.85, change=-0.02)
  # A class below the overall floor, or trailing its baseline by more than the
  # overall limit, is the per-class gate's business, not the overall one's.
  assert passes(eval_config, CLASS_3, 0.73, change=-0.02)


def test_a_class_that_trails_its_baseline_by_more_than_its_limit_fails():
  eval_config = pipeline.eval_config(gate_config(max_class_regression=0.05,
                                                 min_class_accuracy=0.5))
  assert passes(eval_config, CLASS_3, 0.73, change=-0.04)
  assert not passes(eval_config, CLASS_3, 0.73, change=-0.06)
  assert not passes(eval_config, CLASS_3, 0.45)


def test_eval_data_is_sliced_by_label_and_each_class_has_a_regression_limit():
  eval_config = pipeline.eval_config(gate_config(max_class_regression=0.05,
                                                 min_class_accuracy=0.5))
  assert [list(s.feature_keys) for s in eval_config.slicing_specs] == [[], ['label']]
  accuracy = eval_config.metrics_specs[0].metrics[0]
  assert not accuracy.HasField('threshold')  # TFMA would apply it to every slice
  overall, per_class = accuracy.per_slice_thresholds
  assert [list(s.feature_keys) for s in overall.slicing_specs] == [[]]
  assert [list(s.feature_keys) for s in per_class.slicing_specs] == [['label']]
  change = per_class.threshold.change_threshold
  assert -0.0501 < change.absolute.value < -0.05
  assert per_class.threshold.value_threshold.lower_bound.value == 0.5


def test_a_class_limit_of_one_still_slices_but_gates_overall_only():
  eval_config = pipeline.eval_config(gate_config(max_class_regression=1.0))
  assert [list(s.feature_keys) for s in eval_config.slicing_specs] == [[], ['label']]
  overall, = eval_config.metrics_specs[0].metrics[0].per_slice_thresholds
  assert [list(s.feature_keys) for s in overall.slicing_specs] == [[]]


def test_slice_words_name_the_class():
  from tensorflow_model_analysis.proto import metrics_for_slice_pb2
  key = metrics_for_slice_pb2.SliceKey(single_slice_keys=[
      metrics_for_slice_pb2.SingleSliceKey(column='label', int64_value=3)])
  assert run_summary.slice_words(key, ['a', 'b', 'c', 'cat']) == 'class 3 (cat)'
  assert run_summary.slice_words(metrics_for_slice_pb2.SliceKey()) == 'overall'
