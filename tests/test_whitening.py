"""components/whitening.py: filters from Transform's full pass, frozen in the model's first layer."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

import fixtures
import pipeline_runner
from components import transform
from components import whitening
from models import alexnet
from tfx_pipeline import config
from tuning import search_space


def smooth_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
  """Images whose neighbouring pixels and channels correlate, as in photographs."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (n, size // 4, size // 4, 1))
  images = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)  # blocks of 4x4
  images = images * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 12, (n, size, size, 3))
  return np.clip(images, 0, 255).astype(np.uint8)


def patch_covariance(images: np.ndarray) -> np.ndarray:
  found = whitening.patches(tf.constant(images, tf.float32)).numpy().astype(np.float64)
  return np.cov(found, rowvar=False)


def test_filters_decorrelate_patches_to_unit_variance():
  images = (smooth_images(64).astype(np.float32) - 128) / 60
  before = patch_covariance(images)
  assert np.abs(before - np.diag(np.diag(before))).max() > 0.3  # strongly correlated
  kernel = whitening.filters(tf.constant(before, tf.float32), eps=1e-6).numpy()
  assert kernel.shape == whitening.KERNEL_SHAPE
  whitened = tf.nn.conv2d(images, kernel, strides=1, padding='VALID').numpy()
  after = np.cov(whitened.reshape(-1, whitening.DIM).astype(np.float64), rowvar=False)
  np.testing.assert_allclose(after, np.eye(whitening.DIM), atol=2e-3)


@pytest.fixture(scope='module')
def graphs(tmp_path_factory):
  images = smooth_images(48, size=32, seed=1)
  blobs = [fixtures.encode(image, 'png') for image in images]
  labels = [i % 2 for i in range(len(blobs))]
  out = tmp_path_factory.mktemp('whitening')
  return {on: tft.TFTransformOutput(transform.analyze_images(
      blobs, labels, 32, str(out / str(on)), patch_whitening=on)) for on in (False, True)}


def test_transform_computes_the_training_splits_filters_in_a_full_pass(graphs):
  assert whitening.read_kernel(graphs[False]) is None  # off: no extra feature
  kernel = whitening.read_kernel(graphs[True])
  assert kernel.shape == whitening.KERNEL_SHAPE
  # They whiten the very images Transform analyzed, as they reach the model.
  images = smooth_images(48, size=32, seed=1)
  blobs = [fixtures.encode(image, 'png') for image in images]
  normalized = graphs[True].transform_features_layer()(
      {'image': tf.constant([[b] for b in blobs])})['image_xf']
  whitened = tf.nn.conv2d(normalized, kernel, strides=1, padding='VALID').numpy()
  after = np.cov(whitened.reshape(-1, whitening.DIM).astype(np.float64), rowvar=False)
  variances = np.diag(after)
  assert np.abs(after - np.diag(variances)).max() < 0.05
  assert 0.3 < variances.min() and variances.max() < 1.05  # EPS damps the flattest ones


def test_the_trainer_refuses_a_transform_graph_without_filters(graphs):
  on = config.ModelConfig(patch_whitening=True)
  with pytest.raises(ValueError, match='made without --patch-whitening'):
    whitening.kernel_for(on, graphs[False])
  assert whitening.kernel_for(config.ModelConfig(), graphs[True]) is None  # off: unused
  assert whitening.kernel_for(on, graphs[True]).shape == whitening.KERNEL_SHAPE


def test_the_whitening_layer_is_frozen_with_the_given_filters():
  hp = search_space.search_space(config.smoke().tune, 'cifar')
  kernel = np.random.default_rng(2).normal(size=whitening.KERNEL_SHAPE).astype('float32')
  model = alexnet.build_model(hp, 'cifar', 32, 3, whitening=kernel)
  plain = alexnet.build_model(hp, 'cifar', 32, 3)
  layer = model.get_layer(alexnet.WHITENING_LAYER)
  np.testing.assert_array_equal(layer.get_weights()[0], kernel)
  assert layer.kernel.path not in {w.path for w in model.trainable_weights}
  assert model.output_shape == plain.output_shape  # 'same' padding: later shapes unchanged
  model.compile(optimizer=keras.optimizers.SGD(0.5), loss='sparse_categorical_crossentropy')
  x = np.random.default_rng(3).normal(size=(8, 32, 32, 3)).astype('float32')
  conv1 = model.get_layer('conv1_conv').get_weights()[0].copy()
  model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
  np.testing.assert_array_equal(layer.get_weights()[0], kernel)  # never trains
  assert not np.array_equal(model.get_layer('conv1_conv').get_weights()[0], conv1)


def test_the_flag_reaches_transform_trainer_and_tuner(tmp_path):
  fixtures.make_image_tree(str(tmp_path), per_class=1, classes=('a', 'b'))
  args = pipeline_runner.parse_args(['--preset', 'smoke', '--image-dir', str(tmp_path),
                                     '--patch-whitening'])
  cfg = pipeline_runner.build_config(args, 'smoke')
  assert cfg.model.patch_whitening and not config.smoke().model.patch_whitening
  off = pipeline_runner.parse_args(['--preset', 'cpu', '--image-dir', str(tmp_path),
                                    '--no-patch-whitening'])
  assert config.cpu().model.patch_whitening  # the preset's recipe ...
  assert not pipeline_runner.build_config(off, 'cpu').model.patch_whitening  # ... the flag's
  settings = json.loads(json.dumps(cfg.module_config()))  # what the Trainer and Tuner get
  assert config.model_config_from_dict(settings['model']).patch_whitening
