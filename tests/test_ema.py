"""The moving average of the weights (models/ema.py) on the pinned Keras.

A small Dense+BatchNorm classifier, compiled by the project's compile_model,
fits a few 16-image steps (seconds): after fit the model holds the average
of every step's weights, validation scores that average, a warm start
averages from the loaded weights, and a killed training resumes both the
weights and their average. The learning rate stays high over these steps
(a 100-step schedule), so raw and averaged weights are far apart.
"""

import json
import os

import keras
import numpy as np
import pytest

from components import trainer
from components import warm_start
from models import ema, training
from tfx_pipeline import config
from tuning.search_space import search_space

CLASSES = ['a', 'b', 'c', 'd']
HP = search_space(config.TuneConfig(), 'cifar')  # the defaults: learning rate 0.08, ...
STEPS = 100  # the one-cycle schedule's length: longer than any fit here
_rng = np.random.default_rng(0)
_W = _rng.normal(size=(8, 4))  # the labels: argmax of a fixed linear map
X = _rng.normal(size=(64, 8)).astype('float32')
Y = np.argmax(X @ _W, axis=1)
XV = _rng.normal(size=(32, 8)).astype('float32')
YV = np.argmax(XV @ _W, axis=1)


def tiny_net(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.Input((8,)), keras.layers.Dense(16), keras.layers.BatchNormalization(),
      keras.layers.ReLU(), keras.layers.Dense(len(CLASSES), activation='softmax')])


def tiny_model(momentum, seed=0):
  return training.compile_model(tiny_net(seed), HP, total_steps=STEPS, ema_momentum=momentum)


def weights(model):
  return [v.numpy() for v in model.trainable_variables]


class Steps(keras.callbacks.Callback):
  """The trainable weights after every training step (the raw ones: the swap is undone)."""

  def __init__(self):
    super().__init__()
    self.after = []

  def on_train_batch_end(self, batch, logs=None):
    self.after.append(weights(self.model))


class Killed(Exception):
  pass


class KilledAt(keras.callbacks.Callback):
  """The process dies at the end of epoch `epoch` (after the checkpoint was saved)."""

  def __init__(self, epoch):
    super().__init__()
    self.epoch = epoch

  def on_epoch_end(self, epoch, logs=None):
    if epoch == self.epoch:
      raise Killed(f'after epoch {epoch}')


def fit(model, momentum, epochs=3, callbacks=()):
  steps = Steps()
  history = model.fit(X, Y, batch_size=16, epochs=epochs, shuffle=False,
                      validation_data=(XV, YV), verbose=0,
                      callbacks=[*ema.callbacks(momentum), steps, *callbacks])
  return steps.after, history.history


def moving_average(steps, momentum):
  """Keras' EMA restated: the first step sets it, then a <- m*a + (1-m)*w."""
  average = steps[0]
  for w in steps[1:]:
    average = [momentum * a + (1 - momentum) * v for a, v in zip(average, w)]
  return average


def distance(a, b):
  """Relative distance between two lists of weights."""
  return (np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b)))
          / np.sqrt(sum(np.sum(y ** 2) for y in b)))


def test_after_fit_the_model_holds_the_average_of_every_steps_weights():
  model = tiny_model(0.9)
  steps, _ = fit(model, 0.9)
  assert len(steps) == 12
  expected = moving_average(steps, 0.9)
  for got, want in zip(weights(model), expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert distance(weights(model), steps[-1]) > 0.01  # not the last step's weights

  # Without it, the same seed ends on the last step's weights: the same path, no average.
  plain = tiny_model(0.0)
  plain_steps, _ = fit(plain, 0.0)
  assert not plain.optimizer.use_ema
  for got, want in zip(weights(plain), plain_steps[-1]):
    np.testing.assert_array_equal(got, want)
  for a, b in zip(plain_steps[0], steps[0]):
    np.testing.assert_array_equal(a, b)
  assert distance(weights(model), weights(plain)) > 0.01


def test_validation_scores_the_averaged_weights():
  model = tiny_model(0.9)
  steps, history = fit(model, 0.9)
  # After fit the model holds the average that the last epoch's validation used.
  averaged = model.evaluate(XV, YV, verbose=0, return_dict=True)
  assert history['val_loss'][-1] == pytest.approx(averaged['loss'], rel=1e-5)
  for variable, raw in zip(model.trainable_variables, steps[-1]):
    variable.assign(raw)
  raw = model.evaluate(XV, YV, verbose=0, return_dict=True)
  assert history['val_loss'][-1] != pytest.approx(raw['loss'], rel=1e-3)


def test_early_stopping_keeps_the_average_of_its_best_epoch():
  model = tiny_model(0.9)
  # Best = highest validation loss: an early epoch, so the restore has something to do.
  stop = keras.callbacks.EarlyStopping(monitor='val_loss', mode='max', patience=10,
                                       restore_best_weights=True)
  steps, history = fit(model, 0.9, epochs=4, callbacks=[stop])
  assert stop.best_epoch < 3 and history['val_loss'][stop.best_epoch] == max(history['val_loss'])
  best = moving_average(steps[:4 * (stop.best_epoch + 1)], 0.9)
  for got, want in zip(weights(model), best):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_warm_start_averages_from_the_loaded_weights(tmp_path):
  parent = tiny_model(0.9)
  fit(parent, 0.9)  # its Format-Keras weights file holds the optimizer's averages too
  warm_start.save(parent, CLASSES, str(tmp_path))

  child = tiny_net(seed=1)  # fresh weights, no optimizer yet, as in run_fn
  warm_start.load(child, warm_start.keras_dir(str(tmp_path)))
  training.compile_model(child, HP, total_steps=STEPS, lr_scale=0.1, ema_momentum=0.99)
  steps, _ = fit(child, 0.99, epochs=1)
  # Four steps at 0.99: an average begun at zeros would hold 1 - 0.99**4 = 4% of the
  # weights; begun at the first step's weights it stays by the parent's.
  assert distance(weights(child), weights(parent)) < 0.05
  assert distance(weights(child), moving_average(steps, 0.99)) < 1e-5


def test_a_killed_training_resumes_both_the_weights_and_their_average(tmp_path):
  train = config.TrainConfig(ema_momentum=0.9)
  run_dir = str(tmp_path / 'run')

  def callbacks(backup):  # the Trainer's own list, in its order
    return trainer.callbacks(run_dir, train, str(tmp_path / backup))

  whole = tiny_model(0.9)
  whole.fit(X, Y, batch_size=16, epochs=4, shuffle=False, validation_data=(XV, YV),
            verbose=0, callbacks=callbacks('whole'))

  with pytest.raises(Killed):
    tiny_model(0.9).fit(X, Y, batch_size=16, epochs=4, shuffle=False,
                        validation_data=(XV, YV), verbose=0,
                        callbacks=callbacks('killed') + [KilledAt(1)])
  with open(tmp_path / 'killed' / 'training_metadata.json') as f:
    assert json.load(f)['epoch'] == 2  # epochs done
  resumed = tiny_model(0.9, seed=5)  # other initial weights: the checkpoint replaces them
  resumed_steps = Steps()
  resumed.fit(X, Y, batch_size=16, epochs=4, shuffle=False, validation_data=(XV, YV),
              verbose=0, callbacks=callbacks('killed') + [resumed_steps])
  assert len(resumed_steps.after) == 8  # epochs 3 and 4
  assert not os.path.exists(tmp_path / 'killed')  # done: Keras removed the checkpoint
  # The same weights and the same average as without the kill (the swap's float32
  # rounding aside); a checkpoint saved with the two swapped would be far off.
  for got, want in zip(weights(resumed), weights(whole)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
