"""preprocessing_fn: decode/resize agree eagerly and inside tf.data; statistics are full-pass."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import fixtures
from components import features, transform


@pytest.fixture(scope='module')
def encoded():
  rng = np.random.default_rng(0)
  arrays = [fixtures.synthetic_image(k, rng, 32) for k in range(4)]
  return arrays, [fixtures.encode(a, 'png') for a in arrays]


def test_decode_keeps_png_pixels_at_native_size(encoded):
  arrays, blobs = encoded
  out = transform.decode_images(tf.constant(blobs), 32).numpy()
  np.testing.assert_array_equal(out, np.stack(arrays).astype(np.float32))


@pytest.mark.parametrize('fmt', ['jpg', 'png'])
def test_skipping_the_same_size_resize_changes_no_pixel(fmt):
  rng = np.random.default_rng(3)
  for size in (32, 45):
    blob = fixtures.encode(fixtures.synthetic_image(2, rng, size), fmt)
    pixels = tf.cast(tf.io.decode_image(blob, channels=3), tf.float32)
    resized = tf.image.resize(pixels, [size, size], antialias=True)
    np.testing.assert_array_equal(transform.decode_image(tf.constant(blob), size).numpy(),
                                  resized.numpy())


@pytest.mark.parametrize('size', [32, 48])
def test_a_batch_of_one_decodes_exactly_like_a_batch_of_many(encoded, size):
  _, blobs = encoded
  batched = transform.decode_images(tf.constant(blobs), size).numpy()
  one_by_one = [transform.decode_images(tf.constant([b]), size).numpy() for b in blobs]
  in_graph = tf.function(lambda b: transform.decode_images(b, size))
  graph_one = [in_graph(tf.constant([[b]])).numpy() for b in blobs]  # [1, 1] as TFT feeds it
  for i in range(len(blobs)):
    np.testing.assert_array_equal(one_by_one[i], batched[i:i + 1])
    np.testing.assert_array_equal(graph_one[i], batched[i:i + 1])


def test_decode_eager_and_in_tf_data_agree(encoded):
  _, blobs = encoded
  eager = transform.decode_images(tf.constant(blobs), 48).numpy()
  ds = tf.data.Dataset.from_tensor_slices(blobs).batch(2).map(
      lambda b: transform.decode_images(b, 48))
  in_data = np.concatenate([b.numpy() for b in ds])
  np.testing.assert_allclose(eager, in_data, rtol=0, atol=1e-5)
  assert eager.shape == (4, 48, 48, 3)


@pytest.mark.parametrize('mode, shape', [('L', (20, 30)), ('RGBA', (64, 17, 4)), ('RGB', (5, 90, 3))])
def test_decode_handles_gray_rgba_and_odd_sizes(mode, shape):
  from PIL import Image
  import io
  array = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array, mode=mode).save(buffer, format='PNG')
  out = transform.decode_images(tf.constant([buffer.getvalue()]), 32)
  assert out.shape == (1, 32, 32, 3)
  assert np.isfinite(out.numpy()).all()


def test_undecodable_bytes_raise_instead_of_a_zero_image():
  with pytest.raises(tf.errors.InvalidArgumentError):
    transform.decode_images(tf.constant([b'not an image']), 32)


def test_transform_graph_normalizes_with_training_statistics(transform_output, image_tree):
  paths = sorted(glob.glob(os.path.join(image_tree, 'train', '*', '*')))
  blobs = [open(p, 'rb').read() for p in paths]
  pixels = transform.decode_images(tf.constant(blobs), 32).numpy()
  mean = pixels.reshape(-1, 3).mean(0)
  std = pixels.reshape(-1, 3).std(0)
  layer = transform_output.transform_features_layer()
  out = layer({features.IMAGE_KEY: tf.constant([[b] for b in blobs]),
               features.LABEL_KEY: tf.zeros([len(blobs), 1], tf.int64)})
  images = out[features.TRANSFORMED_IMAGE_KEY].numpy()
  np.testing.assert_allclose(images, (pixels - mean) / std, atol=1e-3)
  np.testing.assert_allclose(images.reshape(-1, 3).mean(0), 0, atol=1e-3)
  np.testing.assert_allclose(images.reshape(-1, 3).std(0), 1, atol=1e-3)


def test_transform_graph_serves_without_a_label(transform_output, image_tree):
  blob = open(sorted(glob.glob(os.path.join(image_tree, 'train', 'cat', '*')))[0], 'rb').read()
  out = transform_output.transform_features_layer()({features.IMAGE_KEY: tf.constant([[blob]])})
  assert out[features.TRANSFORMED_IMAGE_KEY].shape == (1, 32, 32, 3)
