"""How a model is optimized: one-cycle schedule, SGD+Nesterov, label smoothing.

Shared by the Tuner's trials and the Trainer so both optimize the same way;
the Trainer alone may add an average of the weights (models/ema.py).
"""

from __future__ import annotations

import keras
from keras import ops

from models import ema

ACCURACY = 'accuracy'  # Keras metric name; the Tuner's objective is 'val_accuracy'
WARMUP_FRACTION = 0.2  # share of steps spent ramping the learning rate up
MOMENTUM = 0.9
NO_DECAY = ('gamma', 'beta', 'bias')  # BatchNorm and bias variables skip weight decay


@keras.saving.register_keras_serializable(package='alexnet')
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
  """Linear ramp 0 -> peak over the first `warmup` of steps, then linear back to 0."""

  def __init__(self, peak: float, total_steps: int, warmup: float = WARMUP_FRACTION):
    self.peak = float(peak)
    self.total_steps = max(1, int(total_steps))
    self.warmup = float(warmup)

  def __call__(self, step):
    step = ops.cast(step, 'float32')
    total = float(self.total_steps)
    up = max(1.0, self.warmup * total)
    rising = step / up
    falling = (total - step) / max(1.0, total - up)
    return self.peak * ops.maximum(0.0, ops.where(step < up, rising, falling))

  def get_config(self):
    return {'peak': self.peak, 'total_steps': self.total_steps, 'warmup': self.warmup}


def seed_everything(seed: int, deterministic: bool) -> None:
  """Seeds Python, NumPy and TF; with `deterministic`, also makes TF ops deterministic.

  Op determinism costs speed, so presets switch it on only where runs must
  repeat exactly (smoke: the same data and seed give the same best
  hyperparameters).
  """
  keras.utils.set_random_seed(seed)
  if deterministic:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.experimental.enable_op_determinism()


def smoothed_crossentropy(num_classes: int, smoothing: float):
  """Sparse labels -> categorical cross-entropy with label smoothing."""
  loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)

  def sparse_smoothed(y_true, y_pred):
    y_true = ops.one_hot(ops.cast(ops.reshape(y_true, [-1]), 'int32'), num_classes)
    return loss(y_true, y_pred)

  return sparse_smoothed


def compile_model(model: keras.Model, hp, total_steps: int, jit_compile: bool = False,
                  lr_scale: float = 1.0, ema_momentum: float = 0.0):
  """Compiles `model` in place for `total_steps` of training and returns it.

  `lr_scale` lowers the schedule's peak (a warm start fine-tunes trained weights).
  `ema_momentum` > 0: the optimizer keeps an EMA of the weights, which `fit`
  leaves in the model at its end; fit with `ema.callbacks(ema_momentum)` so
  that validation sees it too (models/ema.py).
  """
  optimizer = keras.optimizers.SGD(
      learning_rate=OneCycle(hp.get('learning_rate') * lr_scale, total_steps),
      momentum=MOMENTUM, nesterov=True, weight_decay=hp.get('weight_decay'),
      **ema.optimizer_options(ema_momentum))
  optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
  num_classes = model.output_shape[-1]
  model.compile(
      optimizer=optimizer,
      loss=smoothed_crossentropy(num_classes, hp.get('label_smoothing')),
      metrics=[keras.metrics.SparseCategoricalAccuracy(name=ACCURACY)],
      jit_compile=jit_compile)
  return model
