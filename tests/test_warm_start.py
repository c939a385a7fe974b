"""Warm start: which blessed model's weights a Trainer may start from, and the round trip."""

import os

import keras
import numpy as np
import pytest

from components import warm_start


def small_model(width=4, classes=3):
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(width, 3)(inputs)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(classes, activation='softmax')(x))


@pytest.fixture
def blessed(tmp_path):
  """A 'Model artifact' dir with Format-Serving and the Keras weights beside it."""
  model = small_model()
  uri = tmp_path / 'model' / '7'
  os.makedirs(uri / 'Format-Serving')
  warm_start.save(model, ['a', 'b', 'c'], str(uri))
  return model, str(uri / 'Format-Serving')


def test_matching_architecture_warm_starts_and_loads_the_same_weights(blessed):
  base, serving_path = blessed
  fresh = small_model()
  plan = warm_start.plan(serving_path, fresh, ['a', 'b', 'c'], enabled=True)
  assert plan.source and plan.reason.startswith('warm start from the blessed model')
  warm_start.load(fresh, plan.source)
  for a, b in zip(base.get_weights(), fresh.get_weights()):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('model, classes, enabled, reason', [
    (lambda: small_model(width=8), ['a', 'b', 'c'], True, 'weight 0 has shape [3, 3, 3, 4] vs'),
    (small_model, ['a', 'b', 'x'], True, "classes differ (['a', 'b', 'c'] vs ['a', 'b', 'x'])"),
    (small_model, ['a', 'b', 'c'], False, 'warm start is off (--from-scratch)'),
])
def test_cold_start_says_why(blessed, model, classes, enabled, reason):
  _, serving_path = blessed
  plan = warm_start.plan(serving_path, model(), classes, enabled)
  assert plan.source is None and reason in plan.reason


def test_no_blessed_model_or_one_without_keras_weights_is_a_cold_start(tmp_path):
  assert warm_start.plan(None, small_model(), ['a'], True) == \
      warm_start.Plan(None, 'cold start: no blessed model of an earlier span '
                            '(a plain image tree never warm-starts)')
  old = tmp_path / 'old' / 'Format-Serving'
  os.makedirs(old)
  plan = warm_start.plan(str(old), small_model(), ['a'], True)
  assert plan.source is None and 'has no Format-Keras/ weights' in plan.reason


def test_the_saved_model_records_its_training_files_and_a_window_splits_on_them(tmp_path):
  uri = tmp_path / 'model' / '9'
  warm_start.save(small_model(), ['a', 'b', 'c'], str(uri), ['ex/2/Split-train/*', 'ex/1/Split-train/*'])
  seen = warm_start.seen_train_files(warm_start.keras_dir(str(uri)))
  assert seen == ['ex/1/Split-train/*', 'ex/2/Split-train/*']
  window = ['ex/2/Split-train/*', 'ex/3/Split-train/*', 'ex/1/Split-train/*']
  assert warm_start.split_window(window, seen) == (
      ['ex/3/Split-train/*'], ['ex/2/Split-train/*', 'ex/1/Split-train/*'])


def test_a_model_saved_without_the_record_has_seen_nothing(blessed, tmp_path):
  _, serving_path = blessed
  source = warm_start.keras_dir(os.path.dirname(serving_path))
  os.remove(os.path.join(source, warm_start.TRAIN_FILES_FILE))
  assert warm_start.seen_train_files(source) == []
  assert warm_start.split_window(['a/*'], []) == (['a/*'], [])
