"""How a model is optimized: one-cycle schedule, SGD+Nesterov, label smoothing.

Shared by the Tuner's trials and the Trainer so both optimize the same way;
the Trainer alone may add an average of the weights (models/ema.py) and a
higher learning rate on BatchNorm biases (`BiasScaledSGD`).
"""

from __future__ import annotations

import keras
from keras import ops

from models import ema

ACCURACY = 'accuracy'  # Keras metric name; the Tuner's objective is 'val_accuracy'
WARMUP_FRACTION = 0.2  # share of steps spent ramping the learning rate up
MOMENTUM = 0.9
NO_DECAY = ('gamma', 'beta', 'bias')  # BatchNorm and bias variables skip weight decay
BN_BIAS = 'beta'  # the name Keras gives a BatchNormalization layer's bias (its shift)


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


@keras.saving.register_keras_serializable(package='alexnet')
class BiasScaledSGD(keras.optimizers.SGD):
  """SGD whose steps on BatchNorm biases take `bias_lr_scale` times the learning rate.

  airbench's ablation credits a higher rate on BatchNorm biases with part of
  its speed-up (KellerJordan/cifar10-zoo, airbench/ablations). Every other
  variable, the momentum and the schedule are plain SGD's; BatchNorm biases
  skip weight decay either way (NO_DECAY).
  """

  def __init__(self, bias_lr_scale: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    self.bias_lr_scale = float(bias_lr_scale)

  def update_step(self, gradient, variable, learning_rate):
    # `variable` may be the backend's own (TF passes a tf.Variable); the Keras
    # variable the optimizer was built with carries the layer's name for it.
    if self._trainable_variables[self._get_variable_index(variable)].name == BN_BIAS:
      learning_rate = ops.multiply(learning_rate, self.bias_lr_scale)
    super().update_step(gradient, variable, learning_rate)

  def get_config(self):
    return {**super().get_config(), 'bias_lr_scale': self.bias_lr_scale}


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
                  lr_scale: float = 1.0, ema_momentum: float = 0.0,
                  bias_lr_scale: float = 1.0):
  """Compiles `model` in place for `total_steps` of training and returns it.

  `lr_scale` lowers the schedule's peak (a warm start fine-tunes trained weights).
  `ema_momentum` > 0: the optimizer keeps an EMA of the weights, which `fit`
  leaves in the model at its end; fit with `ema.callbacks(ema_momentum)` so
  that validation sees it too (models/ema.py).
  `bias_lr_scale` != 1: BatchNorm biases step at that multiple of the rate
  (`BiasScaledSGD`); 1 keeps Keras' own SGD.
  """
  options = dict(
      learning_rate=OneCycle(hp.get('learning_rate') * lr_scale, total_steps),
      momentum=MOMENTUM, nesterov=True, weight_decay=hp.get('weight_decay'),
      **ema.optimizer_options(ema_momentum))
  optimizer = (keras.optimizers.SGD(**options) if bias_lr_scale == 1.0
               else BiasScaledSGD(bias_lr_scale=bias_lr_scale, **options))
  optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
  num_classes = model.output_shape[-1]
  model.compile(
      optimizer=optimizer,
      loss=smoothed_crossentropy(num_classes, hp.get('label_smoothing')),
      metrics=[keras.metrics.SparseCategoricalAccuracy(name=ACCURACY)],
      jit_compile=jit_compile)
  return model
