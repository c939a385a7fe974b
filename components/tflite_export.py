"""A TFLite copy of the trained model, for phones and edge devices.

    image uint8 [1, size, size, 3]        decoded RGB, already resized to the model's size
      -> probabilities float32 [1, classes]

One image per call, with static shapes: what phone apps send, and what the
interpreter's delegates (XNNPACK here; GPU and NNAPI on phones) need to take
the whole graph (a dynamic batch left a dynamic-sized tensor that XNNPACK
refused).

TFLite's built-in ops cannot decode JPEG or PNG, so the TFLite model starts
where the transform graph's decode and resize end: the app decodes and
resizes (the platform's own decoder), the model does everything after that.
What the transform graph does after the resize (today a per-channel
normalization with the training split's mean and std; a colour whitening or
a mean image would be handled the same way) goes inside the model, read from
the transform graph itself and never copied by hand:

- `fit_pixel_map` runs the transform graph on probe images (black, and pure
  red, green and blue at full intensity, encoded as lossless PNG at the
  model's size, so the graph's resize is a no-op) and solves for the per-pixel
  affine map `out = pixel @ matrix + offset` that it applies. It then checks
  the map on random images and refuses (NotAffineError) a transform that is
  not such a map, rather than embed a wrong approximation. A map that is the
  same at every position, with a diagonal matrix (per-channel normalization),
  becomes one multiply and one add in the TFLite graph.

Quantization (`TFLiteConfig.quantization`, `--tflite`):

- `float`: float32 weights and activations;
- `dynamic`: int8 weights, float activations (no data needed; about 4x smaller);
- `int8`: full-integer: int8 weights and activations, calibrated on a
  representative sample of the training split (decoded and resized the way
  the transform graph does); the input stays uint8 and the output float32.

The Trainer writes `Format-TFLite/` (`model.tflite`, `labels.txt`,
`tflite.json`) beside `Format-Serving/` in its model artifact, where it still
holds the Keras model, the transform graph and the training split. The
Pusher then places that directory at `tflite/<version>/`, a sibling of the
serving directory (`publish`), so TF Serving's version directories hold
nothing but SavedModels.

One Keras per object: the Keras 3 model is called inside a plain `tf.Module`
(as in components/serving.py); the tf_keras transform layer only runs the
probes, eagerly, and is not part of the converted graph.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from components import disk_space
from components import features
from components import transform
from tfx_pipeline import config as config_lib

TFLITE_DIR = 'Format-TFLite'  # beside Format-Serving in the Trainer's model artifact
TFLITE_ROOT = 'tflite'  # beside the serving dir: tflite/<version>/
MODEL_FILE = 'model.tflite'
LABELS_FILE = 'labels.txt'  # one class name per line in id order (TFLite's label-file form)
RECORD_FILE = 'tflite.json'  # quantization, input contract, the fitted pixel map
INPUT_NAME = 'image'
QUANTIZATIONS = config_lib.TFLITE_QUANTIZATIONS  # off, float, dynamic, int8
# Largest difference, in normalized units (training pixels have std 1), between
# the fitted map and the transform graph on random images. float32 rounding of
# (x - mean) / std against x * scale + offset is about 1e-6.
MAP_TOLERANCE = 1e-3
_TEMP_PREFIX = '.tflite-tmp-'  # not an integer: no reader takes it for a version


class NotAffineError(ValueError):
  """The transform graph does more after the resize than a per-pixel affine colour map."""


class PixelMap(NamedTuple):
  """out[..., j] = sum_i pixel[..., i] * matrix[..., i, j] + offset[..., j].

  matrix is [3, 3] and offset [3] when the map is the same at every position,
  else [size, size, 3, 3] and [size, size, 3].
  """
  matrix: np.ndarray
  offset: np.ndarray

  @property
  def is_diagonal(self) -> bool:
    off_diagonal = self.matrix * (1 - np.eye(3, dtype=self.matrix.dtype))
    return not np.any(off_diagonal)

  def apply(self, pixels: np.ndarray) -> np.ndarray:
    """The map on uint8 or float pixels [..., 3], in numpy (tests, the fit's check)."""
    x = pixels.astype(np.float64)
    return np.einsum('...i,...ij->...j', x, self.matrix) + self.offset


def pixels(encoded: tf.Tensor, size: int) -> tf.Tensor:
  """Encoded JPEG/PNG -> uint8 [size, size, 3]: what the TFLite model takes.

  The transform graph's own decode and resize (components/transform.py),
  rounded to uint8. An image already at `size` is not resized, so its pixels
  are exact; a resized one differs from the float the SavedModel sees by at
  most half a grey level.
  """
  image = transform.decode_image(encoded, size)
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def probe_images(size: int) -> np.ndarray:
  """uint8 [4, size, size, 3]: black, then red, green and blue at 255."""
  probes = np.zeros([4, size, size, 3], np.uint8)
  for channel in range(3):
    probes[channel + 1, ..., channel] = 255
  return probes


def fit_pixel_map(transform_pixels: Callable[[np.ndarray], np.ndarray], size: int,
                  checks: int = 3, tolerance: float = MAP_TOLERANCE,
                  seed: int = 0) -> PixelMap:
  """The per-pixel affine colour map that `transform_pixels` applies.

  `transform_pixels` takes uint8 images [n, size, size, 3] and returns what
  preprocessing makes of them, float [n, size, size, 3]. Raises
  NotAffineError, with the largest difference, if the map does not
  reproduce it on `checks` random images.
  """
  out = np.asarray(transform_pixels(probe_images(size)), np.float64)
  offset = out[0]
  matrix = np.stack([(out[c + 1] - offset) / 255.0 for c in range(3)], axis=-2)
  # The same map everywhere: keep one [3, 3] and [3] instead of one per pixel.
  if (np.allclose(matrix, matrix[:1, :1], rtol=0, atol=1e-7)
      and np.allclose(offset, offset[:1, :1], rtol=0, atol=1e-6)):
    matrix, offset = matrix[0, 0], offset[0, 0]
  fitted = PixelMap(matrix.astype(np.float32), offset.astype(np.float32))
  rng = np.random.default_rng(seed)
  random = rng.integers(0, 256, [checks, size, size, 3], dtype=np.uint8)
  error = float(np.max(np.abs(fitted.apply(random)
                              - np.asarray(transform_pixels(random), np.float64))))
  if not error <= tolerance:
    raise NotAffineError(
        f'the transform graph is not a per-pixel affine map of the decoded colours (it '
        f'differs from the best such map by up to {error:.3g} on random images, over '
        f'{tolerance:g}); the TFLite model cannot hold it as a map of uint8 pixels')
  return fitted


def transform_pixels_of(tft_output, size: int) -> Callable[[np.ndarray], np.ndarray]:
  """uint8 images -> the transform graph's output on them, through lossless PNGs."""
  layer = tft_output.transform_features_layer()

  def run(images: np.ndarray) -> np.ndarray:
    encoded = [tf.io.encode_png(image).numpy() for image in images]
    raw = {features.IMAGE_KEY: tf.reshape(tf.constant(encoded), [-1, 1])}
    result = layer(raw)[features.TRANSFORMED_IMAGE_KEY].numpy()
    if result.shape != images.shape:
      raise NotAffineError(f'the transform graph makes {result.shape} of images shaped '
                           f'{images.shape}; the TFLite model expects the size to stay')
    return result

  return run


class PixelModule(tf.Module):
  """The model behind uint8 pixels: the fitted map, then the network."""

  def __init__(self, model, pixel_map: PixelMap, size: int, test_time_flip: bool = False):
    super().__init__(name='alexnet_tflite')
    self._test_time_flip = bool(test_time_flip)
    # The Keras 3 model stays out of the tracked attributes (components/serving.py).
    self._call_model = lambda images: model(images, training=False)
    self.model_variables = [v.value for v in model.variables]
    self._diagonal = pixel_map.is_diagonal
    self._scale = tf.constant(np.diagonal(pixel_map.matrix, axis1=-2, axis2=-1))
    self._matrix = tf.constant(pixel_map.matrix)
    self._offset = tf.constant(pixel_map.offset)
    self.predict = tf.function(self._predict, input_signature=[
        tf.TensorSpec([1, size, size, 3], tf.uint8, name=INPUT_NAME)])

  def _predict(self, image):
    x = tf.cast(image, tf.float32)
    if self._diagonal:
      x = x * self._scale + self._offset
    else:
      x = tf.reduce_sum(x[..., :, tf.newaxis] * self._matrix, axis=-2) + self._offset
    if not self._test_time_flip:
      return {features.PROBABILITIES: tf.cast(self._call_model(x), tf.float32)}
    # As the serving signatures do (components/serving.py): the image and its
    # mirror in one call, the two answers averaged.
    both = tf.cast(self._call_model(tf.concat([x, x[:, :, ::-1, :]], axis=0)), tf.float32)
    return {features.PROBABILITIES: tf.reduce_mean(both, axis=0, keepdims=True)}


def converter_for(module: PixelModule, quantization: str,
                  representative: Optional[Sequence[np.ndarray]] = None):
  """A TFLiteConverter set up for `quantization` (see the module docstring)."""
  if quantization not in QUANTIZATIONS[1:]:
    raise ValueError(f'quantization must be one of {QUANTIZATIONS[1:]}, got {quantization!r}')
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.predict.get_concrete_function()], module)
  if quantization in ('dynamic', 'int8'):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == 'int8':
    if not representative:
      raise ValueError('int8 quantization needs representative images')
    converter.representative_dataset = lambda: ([image[np.newaxis]] for image in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  return converter


def convert(model, pixel_map: PixelMap, size: int, quantization: str,
            representative: Optional[Sequence[np.ndarray]] = None,
            test_time_flip: bool = False) -> bytes:
  """The TFLite flatbuffer of `model` behind `pixel_map` (and its mirror, averaged)."""
  module = PixelModule(model, pixel_map, size, test_time_flip)
  return converter_for(module, quantization, representative).convert()


def split_images(file_patterns: Sequence[str], count: int, seed: int = 0) -> List[bytes]:
  """Up to `count` encoded images drawn from the ExampleGen split behind `file_patterns`."""
  files = sorted(f for p in file_patterns for f in tf.io.gfile.glob(p))
  spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
  records = tf.data.TFRecordDataset(files, compression_type='GZIP')
  # Split files are written in source order (often class by class): shuffle
  # through a window so the sample sees every class.
  records = records.shuffle(max(count * 20, 1000), seed=seed).take(count)
  return [tf.io.parse_single_example(r, spec)[features.IMAGE_KEY].numpy() for r in records]


def representative_images(encoded: Iterable[bytes], size: int) -> List[np.ndarray]:
  return [pixels(e, size).numpy() for e in encoded]


def export(model, tft_output, class_names: Sequence[str], model_uri: str, quantization: str,
           train_images: Callable[[], Sequence[bytes]],
           test_time_flip: bool = False) -> Optional[str]:
  """Writes `model_uri`/Format-TFLite/ (model, labels, record); returns it, or None if off.

  `train_images` is called only for int8: it returns encoded training images
  for the calibration. `test_time_flip`: as the SavedModel's signatures, the
  model averages the image's answer with its mirror's (TrainConfig).
  """
  if quantization == 'off':
    return None
  start = time.perf_counter()
  size = int(tft_output.transformed_feature_spec()[features.TRANSFORMED_IMAGE_KEY].shape[0])
  pixel_map = fit_pixel_map(transform_pixels_of(tft_output, size), size)
  representative = (representative_images(train_images(), size)
                    if quantization == 'int8' else None)
  flatbuffer = convert(model, pixel_map, size, quantization, representative, test_time_flip)
  target = os.path.join(model_uri, TFLITE_DIR)
  tf.io.gfile.makedirs(target)
  with tf.io.gfile.GFile(os.path.join(target, MODEL_FILE), 'wb') as f:
    f.write(flatbuffer)
  with tf.io.gfile.GFile(os.path.join(target, LABELS_FILE), 'w') as f:
    f.write(''.join(f'{name}\n' for name in class_names))
  record = {
      'quantization': quantization,
      'bytes': len(flatbuffer),
      'input': {'name': INPUT_NAME, 'dtype': 'uint8', 'shape': [1, size, size, 3],
                'pixels': 'decoded RGB, resized to the model size (bilinear, antialiased)'},
      'output': {'name': features.PROBABILITIES, 'dtype': 'float32',
                 'shape': [1, len(class_names)]},
      'representative_images': len(representative or ()),
      'test_time_flip': bool(test_time_flip),
      'pixel_map': ({'matrix': pixel_map.matrix.tolist(), 'offset': pixel_map.offset.tolist()}
                    if pixel_map.matrix.ndim == 2 else 'per pixel'),
  }
  with tf.io.gfile.GFile(os.path.join(target, RECORD_FILE), 'w') as f:
    json.dump(record, f, indent=1)
  logging.info('TFLite model (%s, %d bytes) written to %s in %.1f s', quantization,
               len(flatbuffer), target, time.perf_counter() - start)
  return target


def tflite_root(serving_dir: str) -> str:
  """`<parent of serving_dir>/tflite`: outputs/serving -> outputs/tflite."""
  return os.path.join(os.path.dirname(os.path.abspath(serving_dir)), TFLITE_ROOT)


def publish(model_path: str, serving_dir: str, version: int) -> Optional[str]:
  """Places the TFLite files beside the pushed `version` at tflite/<version>/.

  `model_path` is the Format-Serving directory the Pusher pushed. Returns the
  directory, or None when the model has no TFLite copy (`--tflite off`, or a
  model trained before it existed). Copied aside and renamed into place, like
  the version itself; a version already published is left as it is. A full
  disk raises DiskFullError and leaves no partial copy.
  """
  source = os.path.join(os.path.dirname(model_path.rstrip('/')), TFLITE_DIR)
  if not tf.io.gfile.exists(os.path.join(source, MODEL_FILE)):
    return None
  root = tflite_root(serving_dir)
  target = os.path.join(root, str(version))
  if os.path.isdir(target):
    return target
  os.makedirs(root, exist_ok=True)
  temp = os.path.join(root, f'{_TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}')
  try:
    shutil.rmtree(temp, ignore_errors=True)
    os.makedirs(temp)
    for name in tf.io.gfile.listdir(source):
      tf.io.gfile.copy(os.path.join(source, name), os.path.join(temp, name), overwrite=True)
    os.rename(temp, target)
  except BaseException as e:
    shutil.rmtree(temp, ignore_errors=True)
    if isinstance(e, Exception) and disk_space.is_disk_full(e):
      raise disk_space.DiskFullError(root, disk_space.full_message(
          root, f'version {version} is served, but its TFLite model could not be written '
          '(the partial copy is removed)')) from e
    raise
  return target


class Interpreter:
  """A .tflite model through the TFLite interpreter: uint8 images -> probabilities."""

  def __init__(self, model_path: str, num_threads: Optional[int] = None):
    self._interpreter = tf.lite.Interpreter(model_path=model_path, num_threads=num_threads)
    self._interpreter.allocate_tensors()
    self._input = self._interpreter.get_input_details()[0]
    self._output = self._interpreter.get_output_details()[0]

  @property
  def input_details(self) -> Dict:
    return self._input

  def predict_one(self, image: np.ndarray) -> np.ndarray:
    """uint8 [size, size, 3] -> probabilities [classes] (batch 1, the phone's case)."""
    self._interpreter.set_tensor(self._input['index'], image[np.newaxis])
    self._interpreter.invoke()
    return self._interpreter.get_tensor(self._output['index'])[0].copy()

  def predict(self, images: Iterable[np.ndarray]) -> np.ndarray:
    return np.stack([self.predict_one(image) for image in images])

