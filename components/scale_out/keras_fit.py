"""Keras 3's fit under MultiWorkerMirroredStrategy with more than one worker: build first.

Before its first step, Keras 3.12's `fit` (and `evaluate`, which fit calls for
the validation data) averages the first input batch over all replicas with
`strategy.reduce`, only to learn the input shapes for building the model, its
metrics and its optimizer. `MultiWorkerMirroredStrategy.reduce` does not take
a tuple such as (images, labels) once the cluster has two workers
("Attempt to convert a value (PerReplica: ...) to a Tensor"), so training
fails before it starts. One worker, or MirroredStrategy on one machine, never
gets there.

`build_before_fit` builds all of it from the dataset's element spec (shapes
only, no data read) and turns the model's pre-build off: with everything
built, it would do nothing but that reduce.

Then every step averages its logs (loss, metrics: scalars) over the workers
with `strategy.reduce("MEAN", value, axis=0)`, and a scalar has no axis 0
("Invalid reduction dimension 0 for input with 0 dimensions").
`average_scalars_over_axis_none` makes Keras' step reduce scalars over the
replicas alone (axis=None), as its one-machine path does; everything else
goes to Keras' own function. Both are for the pinned Keras (3.12):
tests/test_scale_out.py trains two workers with it.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def build_before_fit(model: keras.Model, element_spec) -> keras.Model:
  """Builds `model` (compiled, under its strategy's scope) for batches of `element_spec`."""
  average_scalars_over_axis_none()
  model._symbolic_build(data_batch=element_spec)  # pylint: disable=protected-access
  model._maybe_symbolic_build = _built  # pylint: disable=protected-access
  return model


def _built(iterator=None, data_batch=None):
  del iterator, data_batch  # the model, its metrics and its optimizer are built


def _is_scalar(value) -> bool:
  """A scalar per replica (one replica per worker: a plain scalar tensor)."""
  if isinstance(value, tf.distribute.DistributedValues):
    return all(v.shape.rank == 0 for v in value.values)
  return isinstance(value, tf.Tensor) and value.shape.rank == 0


def average_scalars_over_axis_none() -> None:
  """Patches Keras' per-step reduction (process-wide, once) for multi-worker scalars."""
  # pylint: disable-next=g-import-not-at-top
  from keras.src.backend.tensorflow import trainer as tf_trainer
  original = tf_trainer.reduce_per_replica
  if getattr(original, '_scalars_over_axis_none', False):
    return

  def reduce_per_replica(values, strategy, reduction):
    if reduction not in ('auto', 'mean') or not isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy):
      return original(values, strategy, reduction)

    def one(value):
      if _is_scalar(value):
        return strategy.reduce('MEAN', value, axis=None)
      return original(value, strategy, reduction)

    return tf.nest.map_structure(one, values)

  reduce_per_replica._scalars_over_axis_none = True  # pylint: disable=protected-access
  tf_trainer.reduce_per_replica = reduce_per_replica


def needed(distribution: tf.distribute.Strategy, workers: int) -> bool:
  return workers > 1 and isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy)
