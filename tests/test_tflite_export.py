"""The TFLite export: the transform graph's map read back, agreement with the SavedModel.

The agreement tests convert the session's `exported` model (a smoke-size
AlexNet with non-trivial BatchNorm statistics) behind the real transform graph
of `transform_output`, run it through the TFLite interpreter on generated
CIFAR-size JPEGs and PNGs decoded to uint8 pixels, and compare every class
probability with what the SavedModel's serving_default returns for the same
encoded bytes.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import fixtures
from components import features
from components import tflite_export

SIZE = 32
# Largest difference in any class probability, TFLite against the SavedModel,
# on the same images. float: the same float32 ops in another runtime (seen:
# 3e-8); dynamic: int8 weights (seen: 4e-4); int8: int8 weights and
# activations, calibrated on the training images (seen: 6e-3).
TOLERANCE = {'float': 1e-5, 'dynamic': 5e-3, 'int8': 0.05}


@pytest.fixture(scope='module')
def check_images(tmp_path_factory):
  """Encoded images the model never saw: 5 per class, JPEG and PNG (every fifth)."""
  import glob
  tree = fixtures.make_image_tree(str(tmp_path_factory.mktemp('check')), per_class=5,
                                  classes=fixtures.NUMBERED_CLASSES, seed=11)
  return [open(p, 'rb').read() for p in sorted(glob.glob(os.path.join(tree, 'train', '*', '*')))]


@pytest.fixture(scope='module')
def train_images(image_tree):
  import glob
  return [open(p, 'rb').read()
          for p in sorted(glob.glob(os.path.join(image_tree, 'train', '*', '*')))]


@pytest.fixture(scope='module')
def converted(exported, transform_output, train_images, tmp_path_factory):
  """{quantization: Format-TFLite dir} of the `exported` model."""
  model = exported[0]
  dirs = {}
  for quantization in TOLERANCE:
    uri = str(tmp_path_factory.mktemp(f'tflite-{quantization}'))
    dirs[quantization] = tflite_export.export(
        model, transform_output, fixtures.NUMBERED_CLASSES, uri, quantization,
        lambda: train_images)
  return dirs


def saved_model_probabilities(exported, encoded):
  signature = exported[1].signatures[features.SERVING_SIGNATURE]
  return signature(image_bytes=tf.constant(encoded))[features.PROBABILITIES].numpy()


def test_fit_recovers_a_colour_whitening_map():
  rng = np.random.default_rng(1)
  matrix = rng.normal(0, 0.02, [3, 3])
  offset = rng.normal(0, 1, [3])
  fitted = tflite_export.fit_pixel_map(
      lambda images: images.astype(np.float64) @ matrix + offset, 8)
  assert fitted.matrix.shape == (3, 3) and fitted.offset.shape == (3,)
  np.testing.assert_allclose(fitted.matrix, matrix, atol=1e-6)
  np.testing.assert_allclose(fitted.offset, offset, atol=1e-5)
  assert not fitted.is_diagonal


def test_fit_keeps_a_map_that_differs_by_position():
  mean_image = np.random.default_rng(2).uniform(0, 255, [8, 8, 3])
  fitted = tflite_export.fit_pixel_map(lambda images: (images - mean_image) / 64.0, 8)
  assert fitted.offset.shape == (8, 8, 3) and fitted.is_diagonal
  np.testing.assert_allclose(fitted.offset, -mean_image / 64.0, atol=1e-5)


def test_fit_refuses_a_transform_that_is_not_affine():
  with pytest.raises(tflite_export.NotAffineError, match='not a per-pixel affine map'):
    tflite_export.fit_pixel_map(lambda images: (images / 255.0) ** 2.2, 8)


def test_the_map_reproduces_the_transform_graph_on_real_images(transform_output, check_images):
  fitted = tflite_export.fit_pixel_map(
      tflite_export.transform_pixels_of(transform_output, SIZE), SIZE)
  assert fitted.matrix.shape == (3, 3) and fitted.is_diagonal  # per-channel normalization
  layer = transform_output.transform_features_layer()
  expected = layer({features.IMAGE_KEY: tf.reshape(tf.constant(check_images), [-1, 1])})[
      features.TRANSFORMED_IMAGE_KEY].numpy()
  pixels = np.stack([tflite_export.pixels(e, SIZE).numpy() for e in check_images])
  np.testing.assert_allclose(fitted.apply(pixels), expected, atol=1e-4)


@pytest.mark.parametrize('quantization', sorted(TOLERANCE))
def test_tflite_agrees_with_the_saved_model(quantization, converted, exported, check_images):
  interpreter = tflite_export.Interpreter(
      os.path.join(converted[quantization], tflite_export.MODEL_FILE))
  assert interpreter.input_details['dtype'] == np.uint8
  assert list(interpreter.input_details['shape_signature']) == [1, SIZE, SIZE, 3]  # static
  pixels = [tflite_export.pixels(e, SIZE).numpy() for e in check_images]
  got = interpreter.predict(pixels)
  want = saved_model_probabilities(exported, check_images)
  assert got.shape == want.shape == (len(check_images), 10)
  difference = float(np.max(np.abs(got - want)))
  assert difference <= TOLERANCE[quantization], (quantization, difference)
  if quantization == 'float':
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_quantization_shrinks_the_model_and_int8_runs_on_integers(converted):
  sizes = {q: os.path.getsize(os.path.join(d, tflite_export.MODEL_FILE))
           for q, d in converted.items()}
  assert sizes['dynamic'] < sizes['float'] / 3 and sizes['int8'] < sizes['float'] / 3

  def activation_types(quantization):
    interpreter = tf.lite.Interpreter(
        os.path.join(converted[quantization], tflite_export.MODEL_FILE))
    return [t['dtype'] for t in interpreter.get_tensor_details()]

  # dynamic: float activations around int8 weights; int8: integer activations.
  assert activation_types('dynamic').count(np.int8) < activation_types('dynamic').count(
      np.float32)
  assert activation_types('int8').count(np.int8) > 3 * activation_types('int8').count(
      np.float32)


def test_export_writes_labels_and_a_record(converted):
  folder = converted['int8']
  with open(os.path.join(folder, tflite_export.LABELS_FILE)) as f:
    assert f.read().splitlines() == fixtures.NUMBERED_CLASSES
  with open(os.path.join(folder, tflite_export.RECORD_FILE)) as f:
    record = json.load(f)
  assert record['quantization'] == 'int8'
  assert record['input'] == {**record['input'], 'dtype': 'uint8', 'shape': [1, SIZE, SIZE, 3]}
  assert record['bytes'] == os.path.getsize(os.path.join(folder, tflite_export.MODEL_FILE))
  assert record['representative_images'] == 120  # image_tree: 12 per class


def test_off_writes_nothing(exported, transform_output, tmp_path):
  def no_images():
    raise AssertionError('off needs no training images')
  assert tflite_export.export(exported[0], transform_output, fixtures.NUMBERED_CLASSES,
                              str(tmp_path), 'off', no_images) is None
  assert os.listdir(tmp_path) == []


def fake_model_uri(path, with_tflite=True):
  """A Trainer-style model artifact: Format-Serving/ and, optionally, Format-TFLite/."""
  os.makedirs(os.path.join(path, 'Format-Serving'))
  if with_tflite:
    folder = os.path.join(path, tflite_export.TFLITE_DIR)
    os.makedirs(folder)
    for name, data in ((tflite_export.MODEL_FILE, b'TFL3 model bytes'),
                       (tflite_export.LABELS_FILE, b'a\nb\n')):
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(data)
  return os.path.join(path, 'Format-Serving')


def test_publish_places_the_files_beside_the_serving_dir(tmp_path):
  model_path = fake_model_uri(str(tmp_path / 'model'))
  serving_dir = str(tmp_path / 'out' / 'serving')
  target = tflite_export.publish(model_path, serving_dir, 1700000000)
  assert target == str(tmp_path / 'out' / 'tflite' / '1700000000')
  assert sorted(os.listdir(target)) == [tflite_export.LABELS_FILE, tflite_export.MODEL_FILE]
  with open(os.path.join(target, tflite_export.MODEL_FILE), 'rb') as f:
    assert f.read() == b'TFL3 model bytes'
  # Again (the same model pushed again): the same place, nothing else left behind.
  assert tflite_export.publish(model_path, serving_dir, 1700000000) == target
  assert os.listdir(tmp_path / 'out' / 'tflite') == ['1700000000']


def test_publish_without_a_tflite_model_writes_nothing(tmp_path):
  model_path = fake_model_uri(str(tmp_path / 'model'), with_tflite=False)
  assert tflite_export.publish(model_path, str(tmp_path / 'serving'), 5) is None
  assert not os.path.exists(tmp_path / 'tflite')


def test_a_failed_publish_leaves_no_version_and_no_temp_dir(tmp_path, monkeypatch):
  model_path = fake_model_uri(str(tmp_path / 'model'))

  def broken_copy(*args, **kwargs):
    raise OSError('copy failed')
  monkeypatch.setattr(tf.io.gfile, 'copy', broken_copy)
  with pytest.raises(OSError, match='copy failed'):
    tflite_export.publish(model_path, str(tmp_path / 'serving'), 7)
  assert os.listdir(tmp_path / 'tflite') == []


def test_a_full_disk_during_publish_says_so_and_leaves_nothing(tmp_path, monkeypatch):
  import errno
  from components import disk_space
  model_path = fake_model_uri(str(tmp_path / 'model'))

  def full_copy(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(tf.io.gfile, 'copy', full_copy)
  with pytest.raises(disk_space.DiskFullError,
                     match='the disk is full: .*version 7 is served, but its TFLite model'):
    tflite_export.publish(model_path, str(tmp_path / 'serving'), 7)
  assert os.listdir(tmp_path / 'tflite') == []


def test_the_flag_reaches_the_trainer_and_not_the_tuner(tmp_path):
  import pipeline_runner
  from tfx_pipeline import pipeline
  args = pipeline_runner.parse_args(['--tflite', 'int8', '--pipeline-root', str(tmp_path / 'r'),
                                     '--serving-dir', str(tmp_path / 's')])
  cfg = pipeline_runner.build_config(args, 'smoke')
  assert cfg.tflite.quantization == 'int8'
  nodes = {c.id: c for c in pipeline.create_pipeline(cfg).components}

  def settings(node):
    value = nodes[node].exec_properties['custom_config']
    return json.loads(value) if isinstance(value, str) else value

  assert settings('Trainer')['tflite'] == {'quantization': 'int8', 'representative_images': 200}
  assert 'tflite' not in settings('Tuner')  # a new --tflite value does not search again


@pytest.mark.parametrize('per_position', [False, True])
def test_a_colour_whitening_map_goes_into_the_tflite_model(per_position, tmp_path):
  """The general path (a full 3x3 matrix, per position or not), on a tiny Keras 3 model."""
  import keras
  rng = np.random.default_rng(4)
  shape = (8, 8) if per_position else ()
  pixel_map = tflite_export.PixelMap(rng.normal(0, 0.02, shape + (3, 3)).astype(np.float32),
                                     rng.normal(0, 1, shape + (3,)).astype(np.float32))
  model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                            keras.layers.Dense(4, activation='softmax')])
  path = tmp_path / 'model.tflite'
  path.write_bytes(tflite_export.convert(model, pixel_map, 8, 'float'))
  images = rng.integers(0, 256, [5, 8, 8, 3], dtype=np.uint8)
  got = tflite_export.Interpreter(str(path)).predict(images)
  want = model(pixel_map.apply(images).astype(np.float32)).numpy()
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize('quantization', ['float', 'int8'])
def test_with_test_time_flip_it_agrees_with_a_flipped_saved_model(
    quantization, exported, transform_output, train_images, check_images, tmp_path):
  from components import serving
  model = exported[0]
  saved = serving.export(model, transform_output, fixtures.NUMBERED_CLASSES,
                         str(tmp_path / 'saved'), test_time_flip=True)
  folder = tflite_export.export(model, transform_output, fixtures.NUMBERED_CLASSES,
                                str(tmp_path / 'tflite'), quantization, lambda: train_images,
                                test_time_flip=True)
  signature = tf.saved_model.load(saved).signatures[features.SERVING_SIGNATURE]
  want = signature(image_bytes=tf.constant(check_images))[features.PROBABILITIES].numpy()
  unflipped = saved_model_probabilities(exported, check_images)
  assert np.max(np.abs(want - unflipped)) > 10 * TOLERANCE['float']  # the flip changes answers
  got = tflite_export.Interpreter(os.path.join(folder, tflite_export.MODEL_FILE)).predict(
      [tflite_export.pixels(e, SIZE).numpy() for e in check_images])
  assert float(np.max(np.abs(got - want))) <= TOLERANCE[quantization]
  with open(os.path.join(folder, tflite_export.RECORD_FILE)) as f:
    assert json.load(f)['test_time_flip'] is True
