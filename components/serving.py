"""The exported SavedModel: serving signatures around the transform graph and the model.

    serving_default(image_bytes: string [None])     encoded JPEG/PNG, any size
      -> probabilities float32 [None, classes], class_ids int64 [None], class_names string [None]
    serving_tf_example(examples: string [None])     serialized tf.Example (Evaluator, batch jobs)
      -> the same three outputs

With `test_time_flip` (TrainConfig.test_time_flip, on in every preset), the
probabilities are the mean of the network's answers for the image and its
left-right mirror: one network call on the doubled batch, +1.2 points of eval
accuracy on a cpu-preset model (docs/training.md, "Accuracy levers"). Both
signatures share it, so the Evaluator scores what clients get.

Both first check that every image is JPEG or PNG (anything else fails with
an InvalidArgumentError that says so, never a silent zero image) and that no
image's header declares more than `max_image_pixels` pixels (a decompression
bomb: a 746 KB PNG can declare 16000x16000 pixels, 3.8 GB once decoded and
preprocessed; it fails with an InvalidArgumentError naming its size and the
limit, before anything is decoded). Then they run the TFT transform graph
(decode, resize, normalize) and the Keras model, so serving applies exactly
the preprocessing that training saw.

`export` also writes, under `assets.extra/` (which TF Serving does not load
into the graph): `tf_serving_warmup_requests`, a few PredictRequests on small
generated images, for both signatures, that TF Serving replays when it loads
a version, so the first real request does not pay for graph initialization
(and a version whose warm-up fails is never served); and
`class_names.json`, every class name in id order, for clients.

One Keras per object: the model is Keras 3 (keras-tuner needs it) and the TFT
layer is tf_keras (TFT makes it). They meet in a plain `tf.Module`, saved
with `tf.saved_model.save`, never inside one Keras model.

TF Serving loads a SavedModel as a TF1 graph: it imports the graph into a
session, runs the SaverDef's restore op, then the init op. The module
therefore tracks the model's `tf.Variable`s themselves, never the Keras 3
model: a Keras 3 variable is a wrapper, and saving the wrapper writes a second,
separate variable that the restore op fills while the signatures read the
original, which only TF2's `tf.saved_model.load` binds ("Could not find
variable conv1_bn/gamma" in TF Serving). components/serving_check/ loads every
export the way TF Serving does before it may be pushed.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from components import features
from components import image_header
from tfx_pipeline import config as config_lib

WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
# Every class name in id order, for clients that show more than the top-1 name
# the signature returns (serving/client.py). TF Serving ignores the file.
CLASS_NAMES_FILE = os.path.join('assets.extra', 'class_names.json')
JPEG_MAGIC = features.JPEG_MAGIC
PNG_MAGIC = features.PNG_MAGIC


def check_image_format(encoded: tf.Tensor, source: str) -> tf.Tensor:
  """`encoded` unchanged if every element starts like a JPEG or PNG file.

  Otherwise raises InvalidArgumentError naming `source` and the batch
  positions at fault. tf.io.decode_image would also take GIF and BMP, which
  the serving contract (and training data) never has, and its own message
  ("Unknown image file format") does not say what the caller should send.
  Bytes with a valid header but a broken body still fail in the decoder
  ("Invalid JPEG data", "Invalid PNG data").
  """
  flat = tf.reshape(encoded, [-1])
  is_jpeg = tf.equal(tf.strings.substr(flat, 0, len(JPEG_MAGIC)), JPEG_MAGIC)
  is_png = tf.equal(tf.strings.substr(flat, 0, len(PNG_MAGIC)), PNG_MAGIC)
  ok = tf.logical_or(is_jpeg, is_png)
  # int32, so tf.debugging.Assert is one Assert op rather than a cond around it.
  bad_positions = tf.cast(tf.reshape(tf.where(tf.logical_not(ok)), [-1]), tf.int32)
  check = tf.debugging.Assert(
      tf.reduce_all(ok),
      [f'{source} must hold encoded JPEG or PNG images; not JPEG or PNG at batch positions',
       bad_positions], summarize=10)
  with tf.control_dependencies([check]):
    return tf.identity(encoded)


def _big_endian_u32(raw: tf.Tensor) -> tf.Tensor:
  """uint8 [n, 4] -> int64 [n]: four bytes read as a big-endian unsigned integer."""
  weights = tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64)
  return tf.reduce_sum(tf.cast(raw, tf.int64) * weights, axis=1)


def declared_sizes(flat: tf.Tensor) -> tf.Tensor:
  """int64 [n, 2]: (height, width) that each image's header declares; 0 for neither format.

  The graph twin of components/image_header.py. PNG: the IHDR chunk's width
  and height, read as bytes (every string is padded first, so a short one
  reads zeros instead of failing the slice). JPEG: tf.image.extract_jpeg_shape,
  which runs libjpeg's header reader alone; it fails like the decoder on a
  JPEG without a readable header ("Invalid JPEG data").
  """
  padded = tf.strings.join([flat, b'\0' * image_header.PNG_HEADER_BYTES])
  is_png = tf.logical_and(
      tf.equal(tf.strings.substr(flat, 0, len(PNG_MAGIC)), PNG_MAGIC),
      tf.equal(tf.strings.substr(padded, image_header.PNG_IHDR_TYPE_OFFSET, 4), b'IHDR'))
  ihdr = tf.reshape(tf.io.decode_raw(
      tf.strings.substr(padded, image_header.PNG_WIDTH_OFFSET, 8), tf.uint8), [-1, 8])
  png = tf.stack([_big_endian_u32(ihdr[:, 4:]), _big_endian_u32(ihdr[:, :4])], axis=1)
  is_jpeg = tf.equal(tf.strings.substr(flat, 0, len(JPEG_MAGIC)), JPEG_MAGIC)

  def jpeg_size(args):
    encoded, jpeg = args
    return tf.cond(jpeg, lambda: tf.image.extract_jpeg_shape(encoded, tf.int64)[:2],
                   lambda: tf.zeros([2], tf.int64))

  jpeg = tf.map_fn(jpeg_size, (flat, is_jpeg),
                   fn_output_signature=tf.TensorSpec([2], tf.int64))
  none = tf.zeros_like(png)
  return tf.where(is_png[:, tf.newaxis], png, tf.where(is_jpeg[:, tf.newaxis], jpeg, none))


def check_image_size(encoded: tf.Tensor, max_pixels: int, source: str) -> tf.Tensor:
  """`encoded` unchanged if no image's header declares more than `max_pixels` pixels.

  Otherwise raises InvalidArgumentError, before any image is decoded:
  "<source>: the image at batch position 1 declares 16000x16000 pixels, over
  the limit 16777216 (refused before decoding; too large at batch positions
  [1])". Run after check_image_format, so every element is JPEG or PNG.
  """
  flat = tf.reshape(encoded, [-1])
  sizes = declared_sizes(flat)
  # float64: exact for every product up to 2**53, and no int64 overflow for
  # two 32-bit PNG dimensions.
  pixels = tf.cast(sizes[:, 0], tf.float64) * tf.cast(sizes[:, 1], tf.float64)
  too_large = pixels > float(max_pixels)
  bad_positions = tf.cast(tf.reshape(tf.where(too_large), [-1]), tf.int32)
  # The first offender, or a zero row past the end when there is none (the
  # message is built either way; Assert prints it only on failure).
  first = tf.argmax(tf.cast(tf.concat([too_large, [True]], 0), tf.int32), output_type=tf.int32)
  height, width = tf.unstack(tf.concat([sizes, tf.zeros([1, 2], tf.int64)], 0)[first])
  reason = image_header.too_large_reason('{}', '{}', max_pixels)
  message = tf.strings.format(
      f'{source}: the image at batch position {{}} {reason} (refused before decoding; '
      'too large at batch positions {})', [first, height, width, bad_positions], summarize=10)
  check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(too_large)), [message])
  with tf.control_dependencies([check]):
    return tf.identity(encoded)


def at_least_one_row(images: tf.Tensor) -> tf.Tensor:
  """`images`, with one zero image appended when the batch is empty.

  With oneDNN (TF's default on AVX-512 hosts, and in some TF Serving builds),
  a Conv2D given a zero-sized batch returns a tensor shaped like its input
  ([0, 32, 32, 3] instead of [0, 32, 32, 32]), and the next layer fails with
  "Incompatible shapes". The network therefore never sees an empty batch;
  the caller slices its outputs back to the real batch size. A non-empty
  batch passes through unchanged (a zero-width pad).
  """
  missing = tf.maximum(0, 1 - tf.shape(images)[0])
  return tf.pad(images, [[0, missing]] + [[0, 0]] * (len(images.shape) - 1))


class ServingModule(tf.Module):
  """Holds the model's variables, the transform layer and the class names for export."""

  def __init__(self, model, tft_output, class_names: Sequence[str],
               max_image_pixels: int = config_lib.MAX_IMAGE_PIXELS,
               test_time_flip: bool = False):
    super().__init__(name='alexnet_serving')
    self._max_image_pixels = int(max_image_pixels)
    self._test_time_flip = bool(test_time_flip)
    # Plain attributes of a tf.Module are tracked for saving; the Keras model
    # must not be (see the module docstring), so it sits in a closure and the
    # module tracks the tf.Variables its call reads.
    self._call_model = lambda images: model(images, training=False)
    self.model_variables = [v.value for v in model.variables]
    self.tft_layer = tft_output.transform_features_layer()
    self.class_names = tf.constant(list(class_names), dtype=tf.string)
    raw_spec = dict(tft_output.raw_feature_spec())
    self._image_spec = raw_spec[features.IMAGE_KEY]
    # Serving requests carry no label; parse only what the transform reads.
    self._example_spec = {features.IMAGE_KEY: self._image_spec}

  def _predict(self, raw: Dict[str, tf.Tensor], source: str) -> Dict[str, tf.Tensor]:
    encoded = check_image_format(raw[features.IMAGE_KEY], source)
    raw = {features.IMAGE_KEY: check_image_size(encoded, self._max_image_pixels, source)}
    images = self.tft_layer(raw)[features.TRANSFORMED_IMAGE_KEY]
    probabilities = self._probabilities(images)
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    return {
        features.PROBABILITIES: probabilities,
        features.CLASS_IDS: class_ids,
        features.CLASS_NAMES: tf.gather(self.class_names, class_ids),
    }

  def _probabilities(self, images: tf.Tensor) -> tf.Tensor:
    """float32 [batch, classes]; with test_time_flip, averaged with the mirrored images'."""
    batch_size = tf.shape(images)[0]
    if self._test_time_flip:
      images = tf.concat([images, tf.image.flip_left_right(images)], axis=0)
    outputs = tf.cast(self._call_model(at_least_one_row(images)), tf.float32)
    if not self._test_time_flip:
      return outputs[:batch_size]
    return (outputs[:batch_size] + outputs[batch_size:2 * batch_size]) / 2.0

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT)])
  def serve_image_bytes(self, image_bytes):
    shape = self._image_spec.shape
    images = tf.reshape(image_bytes, [-1] + [1] * len(shape))
    return self._predict({features.IMAGE_KEY: images}, features.SERVING_INPUT)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLE_INPUT)])
  def serve_tf_examples(self, examples):
    return self._predict(tf.io.parse_example(examples, self._example_spec),
                         f'the tf.Example feature {features.IMAGE_KEY}')


def signatures(module: ServingModule):
  return {
      features.SERVING_SIGNATURE: module.serve_image_bytes.get_concrete_function(),
      features.EXAMPLE_SIGNATURE: module.serve_tf_examples.get_concrete_function(),
  }


def warmup_batches() -> List[List[bytes]]:
  """Encoded images for the warm-up requests: what real traffic looks like.

  A CIFAR-sized JPEG and PNG alone (batch 1, the common request), a grayscale
  and an RGBA PNG of odd sizes (the channel conversions and the resize), and a
  batch of eight (the batched path). Deterministic, generated with TF's own
  encoders so export needs nothing else.
  """
  rng = np.random.default_rng(0)

  def image(height: int, width: int, channels: int = 3) -> np.ndarray:
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)

  def jpeg(array):
    return tf.io.encode_jpeg(array, quality=90).numpy()

  def png(array):
    return tf.io.encode_png(array).numpy()

  return [
      [jpeg(image(32, 32))],
      [png(image(32, 32))],
      [png(image(40, 25, 1)), png(image(17, 64, 4))],
      [jpeg(image(32, 32)) for _ in range(6)] + [jpeg(image(300, 200)), png(image(7, 9))],
  ]


def image_example(encoded: bytes) -> bytes:
  """A serialized tf.Example holding one encoded image: what serving_tf_example reads."""
  return tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
  })).SerializeToString()


def predict_log(signature: str, input_name: str, values: Sequence[bytes]):
  """A PredictionLog holding one PredictRequest: a batch of strings for `signature`."""
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
  request = predict_pb2.PredictRequest()
  request.model_spec.signature_name = signature
  request.inputs[input_name].CopyFrom(
      tf.make_tensor_proto(list(values), dtype=tf.string, shape=[len(values)]))
  return prediction_log_pb2.PredictionLog(
      predict_log=prediction_log_pb2.PredictLog(request=request))


def warmup_requests(batches: Sequence[Sequence[bytes]]) -> list:
  """The warm-up file's records: every batch for serving_default, then the
  last (largest) batch as tf.Examples for serving_tf_example, so TF Serving
  initializes both signatures before a version takes traffic."""
  logs = [predict_log(features.SERVING_SIGNATURE, features.SERVING_INPUT, batch)
          for batch in batches]
  logs.append(predict_log(features.EXAMPLE_SIGNATURE, features.EXAMPLE_INPUT,
                          [image_example(b) for b in batches[-1]]))
  return logs


def write_warmup_file(export_dir: str, logs: Sequence) -> str:
  """Writes `logs` as the TFRecord TF Serving replays on load; returns its path."""
  path = os.path.join(export_dir, WARMUP_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for log in logs:
      writer.write(log.SerializeToString())
  return path


def write_class_names(export_dir: str, class_names: Sequence[str]) -> str:
  path = os.path.join(export_dir, CLASS_NAMES_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(list(class_names), f)
  return path


def export(model, tft_output, class_names: Sequence[str], export_dir: str,
           max_image_pixels: int = config_lib.MAX_IMAGE_PIXELS,
           test_time_flip: bool = False) -> str:
  """Writes the serving SavedModel, its warm-up requests and class names; returns the path.

  The signatures refuse images whose header declares more than
  `max_image_pixels` pixels (`DataConfig.max_image_pixels`), and average
  each image's prediction with its mirror's when `test_time_flip`.
  """
  module = ServingModule(model, tft_output, class_names, max_image_pixels, test_time_flip)
  tf.saved_model.save(module, export_dir, signatures=signatures(module))
  write_warmup_file(export_dir, warmup_requests(warmup_batches()))
  write_class_names(export_dir, class_names)
  return export_dir
