"""Export -> reload -> predict on real JPEG bytes: the serving contract and no skew."""

import glob
import io
import os

import numpy as np
import pytest
import tensorflow as tf

import fixtures
from components import features, serving
from fixtures import NUMBERED_CLASSES as CLASS_NAMES
from tfx_pipeline import config as config_lib


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
  examples = [serving.image_example(b) for b in jpeg_bytes]
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


def encoded(fmt: str, shape=(32, 32, 3), seed: int = 0) -> bytes:
  from PIL import Image
  array = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array.squeeze()).save(buffer, format=fmt)
  return buffer.getvalue()


@pytest.mark.parametrize('name', ['text', 'empty', 'gif', 'bmp'])
def test_bytes_that_are_not_jpeg_or_png_fail_with_a_message_that_says_so(exported, name):
  _, loaded, _ = exported
  bad = {'text': b'GIF? no', 'empty': b'', 'gif': encoded('GIF'), 'bmp': encoded('BMP')}[name]
  good = encoded('JPEG')
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'(?s)image_bytes must hold encoded JPEG or PNG.*\[1 3\]'):
    loaded.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant([good, bad, good, bad]))


@pytest.mark.parametrize('fmt', ['JPEG', 'PNG'])
def test_truncated_images_fail_in_the_decoder_not_as_zero_images(exported, fmt):
  _, loaded, _ = exported
  blob = encoded(fmt, (64, 64, 3))
  with pytest.raises(tf.errors.InvalidArgumentError, match=f'(?i)invalid {fmt} data'):
    loaded.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant([blob[:len(blob) // 2]]))


def test_a_bad_request_does_not_break_the_next_one(exported, jpeg_bytes):
  _, loaded, _ = exported
  serve = loaded.signatures[features.SERVING_SIGNATURE]
  before = serve(image_bytes=tf.constant(jpeg_bytes[:2]))[features.PROBABILITIES].numpy()
  with pytest.raises(tf.errors.InvalidArgumentError):
    serve(image_bytes=tf.constant([b'not an image']))
  after = serve(image_bytes=tf.constant(jpeg_bytes[:2]))[features.PROBABILITIES].numpy()
  np.testing.assert_array_equal(before, after)


def test_the_example_signature_names_the_bad_feature(exported):
  _, loaded, _ = exported
  example = serving.image_example(b'oops')
  with pytest.raises(tf.errors.InvalidArgumentError, match='tf.Example feature image must hold encoded JPEG or PNG'):
    loaded.signatures[features.EXAMPLE_SIGNATURE](examples=tf.constant([example]))


@pytest.mark.parametrize('signature, name', [
    (features.SERVING_SIGNATURE, features.SERVING_INPUT),
    (features.EXAMPLE_SIGNATURE, features.EXAMPLE_INPUT)])
def test_an_empty_batch_gives_empty_outputs(exported, signature, name):
  _, loaded, _ = exported
  out = loaded.signatures[signature](**{name: tf.constant([], tf.string)})
  assert out[features.PROBABILITIES].shape == (0, 10)
  assert out[features.CLASS_IDS].shape == (0,)
  assert out[features.CLASS_NAMES].shape == (0,)


@pytest.mark.parametrize('rows', [0, 1, 3])
def test_at_least_one_row_pads_only_an_empty_batch(rows):
  images = tf.ones([rows, 4, 4, 3])
  padded = serving.at_least_one_row(images)
  assert padded.shape[0] == max(rows, 1)
  np.testing.assert_array_equal(padded[:rows].numpy(), images.numpy())


def read_warmup(path: str):
  from tensorflow_serving.apis import prediction_log_pb2
  return [prediction_log_pb2.PredictionLog.FromString(record.numpy())
          for record in tf.data.TFRecordDataset(path)]


def test_warmup_requests_parse_and_replay_through_the_reloaded_signatures(exported):
  _, loaded, path = exported
  logs = read_warmup(os.path.join(path, 'assets.extra', 'tf_serving_warmup_requests'))
  assert len(logs) == len(serving.warmup_batches()) + 1  # + one tf.Example request
  inputs = {features.SERVING_SIGNATURE: features.SERVING_INPUT,
            features.EXAMPLE_SIGNATURE: features.EXAMPLE_INPUT}
  batch_sizes = {}
  for log in logs:
    assert log.WhichOneof('log_type') == 'predict_log'
    request = log.predict_log.request
    signature = request.model_spec.signature_name
    assert set(request.inputs) == {inputs[signature]}
    blobs = tf.make_ndarray(request.inputs[inputs[signature]])
    out = loaded.signatures[signature](
        **{name: tf.constant(tf.make_ndarray(t)) for name, t in request.inputs.items()})
    assert out[features.PROBABILITIES].shape == (len(blobs), 10)
    np.testing.assert_allclose(out[features.PROBABILITIES].numpy().sum(1), 1, atol=1e-5)
    batch_sizes.setdefault(signature, []).append(len(blobs))
  # Both signatures; the single-image and the batched path of serving_default.
  assert set(batch_sizes) == set(inputs)
  assert 1 in batch_sizes[features.SERVING_SIGNATURE]
  assert max(batch_sizes[features.SERVING_SIGNATURE]) > 1


def test_warmup_images_cover_jpeg_png_gray_and_rgba():
  blobs = [b for batch in serving.warmup_batches() for b in batch]
  channels = {int(tf.io.decode_image(b).shape[-1]) for b in blobs}
  assert channels == {1, 3, 4}
  assert any(b.startswith(serving.JPEG_MAGIC) for b in blobs)
  assert any(b.startswith(serving.PNG_MAGIC) for b in blobs)


def test_export_writes_every_class_name_in_id_order(exported):
  import json
  _, _, path = exported
  with open(os.path.join(path, 'assets.extra', 'class_names.json')) as f:
    assert json.load(f) == CLASS_NAMES


# Decompression bombs: a valid 760 KB PNG of 16000x16000 black pixels (768 MB
# decoded, 3 GB more as float32) and a tiny JPEG whose frame declares 20000x20000.
BOMBS = {'png': ((16000, 16000), lambda: fixtures.png_bomb(16000, 16000)),
         'jpeg': ((20000, 20000), lambda: fixtures.jpeg_bomb(20000, 20000))}
REFUSAL = {features.SERVING_SIGNATURE: features.SERVING_INPUT,
           features.EXAMPLE_SIGNATURE: f'the tf.Example feature {features.IMAGE_KEY}'}


def request_values(signature, blobs):
  return blobs if signature == features.SERVING_SIGNATURE else \
      [serving.image_example(b) for b in blobs]


@pytest.mark.parametrize('kind', sorted(BOMBS))
@pytest.mark.parametrize('signature', sorted(REFUSAL))
def test_a_decompression_bomb_is_refused_before_decoding_as_tf_serving_loads_it(
    tf1_exported, signature, kind):
  (height, width), make = BOMBS[kind]
  good = encoded('JPEG')
  values = request_values(signature, [good, make(), good])
  with fixtures.RssWatch() as memory:
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
      tf1_exported(signature, values)
  assert (f'{REFUSAL[signature]}: the image at batch position 1 declares {height}x{width} '
          f'pixels, over the limit {config_lib.MAX_IMAGE_PIXELS} (refused before decoding; '
          'too large at batch positions [1])') in info.value.message
  print(f'{signature} {kind} bomb: resident memory +{memory.growth_mb:.0f} MB')
  assert memory.growth_mb < 100  # decoding the PNG alone would take 768 MB
  # The session serves the next request as before.
  out = tf1_exported(signature, request_values(signature, [good]))
  assert out[features.PROBABILITIES].shape == (1, 10)


def test_the_tf2_loaded_signatures_refuse_a_bomb_too(exported):
  _, loaded, _ = exported
  with pytest.raises(tf.errors.InvalidArgumentError, match='declares 16000x16000 pixels'):
    loaded.signatures[features.SERVING_SIGNATURE](
        image_bytes=tf.constant([fixtures.png_bomb(16000, 16000)]))


def test_the_pixel_limit_is_the_exports_setting_and_the_limit_itself_passes(
    exported, transform_output):
  model, _, _ = exported
  module = serving.ServingModule(model, transform_output, CLASS_NAMES, max_image_pixels=32 * 32)
  out = module.serve_image_bytes(tf.constant([encoded('PNG', (32, 32, 3)),
                                              encoded('JPEG', (16, 64, 3))]))
  assert out[features.PROBABILITIES].shape == (2, 10)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'position 0 declares 33x32 pixels, over the limit 1024 .*\[0 2\]'):
    module.serve_image_bytes(tf.constant([encoded('PNG', (33, 32, 3)), encoded('JPEG'),
                                          encoded('JPEG', (32, 33, 3))]))


def test_a_bomb_behind_a_bad_format_is_named_as_the_bad_format(tf1_exported):
  """The format check runs first: the caller learns what to send, not only what not to."""
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'must hold encoded JPEG or PNG'):
    tf1_exported(features.SERVING_SIGNATURE, [fixtures.png_bomb(16000, 16000), b'text'])


@pytest.mark.parametrize('blob', [b'\xff\xd8\xff\xe0\x00',
                                  b'\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR'], ids=['jpeg', 'png'])
def test_a_header_cut_short_fails_as_invalid_data(tf1_exported, blob):
  with pytest.raises(tf.errors.InvalidArgumentError, match='(?i)invalid (JPEG|PNG)'):
    tf1_exported(features.SERVING_SIGNATURE, [blob])


def mirrored_png(seed: int):
  """(PNG bytes, PNG bytes of its left-right mirror): lossless, so exactly mirrored pixels."""
  from PIL import Image
  array = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
  out = []
  for pixels in (array, array[:, ::-1]):
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format='PNG')
    out.append(buffer.getvalue())
  return out


def test_test_time_flip_averages_the_image_and_its_mirror_in_both_signatures(
    exported, transform_output, tmp_path):
  model, _, _ = exported
  path = serving.export(model, transform_output, CLASS_NAMES, str(tmp_path / 'flip'),
                        test_time_flip=True)
  pairs = [mirrored_png(seed) for seed in range(3)]
  images = [image for pair in pairs for image in pair]  # image, mirror, image, mirror, ...
  flip = fixtures.Tf1Model(path)  # as TF Serving loads it
  try:
    served = flip(features.SERVING_SIGNATURE, images)[features.PROBABILITIES]
    by_example = flip(features.EXAMPLE_SIGNATURE,
                      [serving.image_example(b) for b in images])[features.PROBABILITIES]
    empty = flip(features.SERVING_SIGNATURE, [])[features.PROBABILITIES]
  finally:
    flip.close()
  layer = transform_output.transform_features_layer()
  pixels = layer({features.IMAGE_KEY: tf.constant([[b] for b in images])})[
      features.TRANSFORMED_IMAGE_KEY]
  direct = model(pixels, training=False).numpy()
  mirrored = model(tf.image.flip_left_right(pixels), training=False).numpy()
  assert not np.allclose(direct, mirrored, atol=1e-3)  # the model itself is not symmetric
  np.testing.assert_allclose(served, (direct + mirrored) / 2, atol=1e-4)
  np.testing.assert_allclose(served[0::2], served[1::2], atol=1e-4)  # a mirror: same answer
  np.testing.assert_allclose(by_example, served, atol=1e-6)
  assert empty.shape == (0, 10)
