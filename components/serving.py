"""The exported SavedModel: serving signatures around the transform graph and the model.

    serving_default(image_bytes: string [None])     encoded JPEG/PNG, any size
      -> probabilities float32 [None, classes], class_ids int64 [None], class_names string [None]
    serving_tf_example(examples: string [None])     serialized tf.Example (Evaluator, batch jobs)
      -> the same three outputs

Both run the TFT transform graph (decode, resize, normalize) and then the
Keras model, so serving applies exactly the preprocessing that training saw.

One Keras per object: the model is Keras 3 (keras-tuner needs it) and the TFT
layer is tf_keras (TFT makes it). They meet in a plain `tf.Module`, saved
with `tf.saved_model.save`, never inside one Keras model.
"""

from __future__ import annotations

from typing import Dict, Sequence

import tensorflow as tf

from components import features


class ServingModule(tf.Module):
  """Holds the model, the transform layer and the class names for export."""

  def __init__(self, model, tft_output, class_names: Sequence[str]):
    super().__init__(name='alexnet_serving')
    self.model = model
    self.tft_layer = tft_output.transform_features_layer()
    self.class_names = tf.constant(list(class_names), dtype=tf.string)
    raw_spec = dict(tft_output.raw_feature_spec())
    self._image_spec = raw_spec[features.IMAGE_KEY]
    # Serving requests carry no label; parse only what the transform reads.
    self._example_spec = {features.IMAGE_KEY: self._image_spec}

  def _predict(self, raw: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    transformed = self.tft_layer(raw)
    probabilities = tf.cast(
        self.model(transformed[features.TRANSFORMED_IMAGE_KEY], training=False), tf.float32)
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    return {
        features.PROBABILITIES: probabilities,
        features.CLASS_IDS: class_ids,
        features.CLASS_NAMES: tf.gather(self.class_names, class_ids),
    }

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT)])
  def serve_image_bytes(self, image_bytes):
    shape = self._image_spec.shape
    images = tf.reshape(image_bytes, [-1] + [1] * len(shape))
    return self._predict({features.IMAGE_KEY: images})

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLE_INPUT)])
  def serve_tf_examples(self, examples):
    return self._predict(tf.io.parse_example(examples, self._example_spec))


def signatures(module: ServingModule):
  return {
      features.SERVING_SIGNATURE: module.serve_image_bytes.get_concrete_function(),
      features.EXAMPLE_SIGNATURE: module.serve_tf_examples.get_concrete_function(),
  }


def export(model, tft_output, class_names: Sequence[str], export_dir: str) -> str:
  """Writes the serving SavedModel to `export_dir` and returns the path."""
  module = ServingModule(model, tft_output, class_names)
  tf.saved_model.save(module, export_dir, signatures=signatures(module))
  return export_dir
