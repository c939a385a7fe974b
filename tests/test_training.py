"""How models are optimized (models/training.py): the BatchNorm-bias learning rate.

A small Dense+BatchNorm classifier, compiled by the project's compile_model,
takes two steps on one 16-image batch (seconds; the one-cycle rate is 0 at the
first step, so the second does the moving). With `bias_lr_scale` s, BatchNorm's bias
moves s times as far as with plain SGD from the same weights and batch, and
every other variable moves exactly as with plain SGD.
"""

import keras
import numpy as np
import pytest

from models import training
from tfx_pipeline import config
from tuning.search_space import search_space

HP = search_space(config.TuneConfig(), 'cifar')  # learning rate 0.08, weight decay 5e-3, ...
_rng = np.random.default_rng(0)
X = _rng.normal(size=(16, 8)).astype('float32')
Y = _rng.integers(0, 4, size=16)


def tiny_net():
  keras.utils.set_random_seed(0)
  return keras.Sequential([
      keras.Input((8,)), keras.layers.Dense(16, name='fc'),
      keras.layers.BatchNormalization(name='bn'), keras.layers.ReLU(),
      keras.layers.Dense(4, activation='softmax', name='logits')])


def two_steps(bias_lr_scale):
  """{variable name: its change over two steps} for a fresh net at this scale."""
  model = training.compile_model(tiny_net(), HP, total_steps=10, bias_lr_scale=bias_lr_scale)
  before = {v.path: v.numpy() for v in model.trainable_variables}
  model.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
  return {v.path.split('/', 1)[1]: v.numpy() - before[v.path]
          for v in model.trainable_variables}, model


def test_batchnorm_bias_steps_scale_times_as_far_and_nothing_else_changes():
  plain, plain_model = two_steps(1.0)
  fast, fast_model = two_steps(16.0)
  assert type(plain_model.optimizer) is keras.optimizers.SGD  # 1: Keras' own optimizer
  assert isinstance(fast_model.optimizer, training.BiasScaledSGD)
  assert sorted(plain) == ['bn/beta', 'bn/gamma', 'fc/bias', 'fc/kernel', 'logits/bias',
                           'logits/kernel']
  for path, step in plain.items():
    assert np.abs(step).max() > 0, path  # it did move: the comparisons mean something
    if path == 'bn/beta':
      np.testing.assert_allclose(fast[path], 16.0 * step, rtol=1e-4, atol=1e-7)
    else:
      np.testing.assert_allclose(fast[path], step, rtol=1e-4, atol=1e-7, err_msg=path)


def test_the_scale_survives_serialization():
  _, model = two_steps(8.0)
  copy = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
  assert isinstance(copy, training.BiasScaledSGD)
  assert copy.bias_lr_scale == 8.0


@pytest.mark.parametrize('scale', [0.0, -2.0])
def test_train_config_refuses_a_scale_that_is_not_positive(scale):
  with pytest.raises(config.ConfigError, match='bias_lr_scale must be positive'):
    config.TrainConfig(bias_lr_scale=scale)
