"""Export -> reload -> predict on real JPEG bytes: the serving contract and no skew."""

import glob
import io
import os

import numpy as np
import pytest
import tensorflow as tf

from components import features, serving
from models import alexnet
from tfx_pipeline import config
from tuning.search_space import search_space

CLASS_NAMES = [f'class_{i}' for i in range(10)]


@pytest.fixture(scope='module')
def exported(tmp_path_factory, transform_output):
  hp = search_space(config.smoke().tune, 'cifar')
  model = alexnet.build_model(hp, 'cifar', 32, 10)
  # Non-trivial BatchNorm statistics, so inference differs from training mode.
  x = tf.random.normal([64, 32, 32, 3]) * 2 + 1
  model(x, training=True)
  path = serving.export(model, transform_output, CLASS_NAMES,
                        str(tmp_path_factory.mktemp('export') / 'model'))
  return model, tf.saved_model.load(path), path


@pytest.fixture(scope='module')
def jpeg_bytes(image_tree):
  paths = sorted(glob.glob(os.path.join(image_tree, 'train', '*', '*.jpg')))[::7]
  return [open(p, 'rb').read() for p in paths]


def test_signatures_keep_the_contract_names_and_types(exported):
  _, loaded, _ = exported
  assert set(loaded.signatures) == {features.SERVING_SIGNATURE, features.EXAMPLE_SIGNATURE}
  default = loaded.signatures[features.SERVING_SIGNATURE]
  inputs = default.structured_input_signature[1]
  assert inputs == {features.SERVING_INPUT: tf.TensorSpec([None], tf.string,
                                                          features.SERVING_INPUT)}
  outputs = default.structured_outputs
  assert outputs[features.PROBABILITIES].dtype == tf.float32
  assert outputs[features.PROBABILITIES].shape.as_list() == [None, 10]
  assert outputs[features.CLASS_IDS].dtype == tf.int64
  assert outputs[features.CLASS_NAMES].dtype == tf.string


def test_serving_matches_the_keras_model_on_the_trainers_preprocessing(
    exported, jpeg_bytes, transform_output):
  model, loaded, _ = exported
  served = loaded.signatures[features.SERVING_SIGNATURE](
      image_bytes=tf.constant(jpeg_bytes))
  # The Trainer's own path: parse-free raw features -> transform layer -> model.
  layer = transform_output.transform_features_layer()
  transformed = layer({features.IMAGE_KEY: tf.constant([[b] for b in jpeg_bytes])})
  direct = model(transformed[features.TRANSFORMED_IMAGE_KEY], training=False).numpy()
  np.testing.assert_allclose(served[features.PROBABILITIES].numpy(), direct, atol=1e-4)
  np.testing.assert_allclose(served[features.PROBABILITIES].numpy().sum(1), 1, atol=1e-5)
  ids = served[features.CLASS_IDS].numpy()
  np.testing.assert_array_equal(ids, direct.argmax(1))
  assert [n.decode() for n in served[features.CLASS_NAMES].numpy()] == \
      [CLASS_NAMES[i] for i in ids]


def test_example_signature_gives_the_same_probabilities(exported, jpeg_bytes):
  _, loaded, _ = exported
  examples = [tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b])),
  })).SerializeToString() for b in jpeg_bytes]
  by_example = loaded.signatures[features.EXAMPLE_SIGNATURE](examples=tf.constant(examples))
  by_bytes = loaded.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant(jpeg_bytes))
  np.testing.assert_allclose(by_example[features.PROBABILITIES].numpy(),
                             by_bytes[features.PROBABILITIES].numpy(), atol=1e-6)


def test_gray_rgba_and_odd_sizes_are_served(exported):
  from PIL import Image
  _, loaded, _ = exported
  blobs = []
  for mode, shape, fmt in [('L', (40, 25), 'PNG'), ('RGBA', (17, 64, 4), 'PNG'),
                           ('RGB', (300, 200, 3), 'JPEG')]:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8),
                    mode=mode).save(buffer, format=fmt)
    blobs.append(buffer.getvalue())
  out = loaded.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant(blobs))
  assert out[features.PROBABILITIES].shape == (3, 10)


def test_undecodable_bytes_raise_invalid_argument(exported):
  _, loaded, _ = exported
  with pytest.raises(tf.errors.InvalidArgumentError):
    loaded.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant([b'GIF? no']))
