"""The header reader: the size every JPEG and PNG declares, as TensorFlow's decoders see it."""

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import fixtures
from components import image_header


def pil_encoded(array: np.ndarray, fmt: str, **options) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt, **options)
  return buffer.getvalue()


def real_files():
  """(name, bytes): JPEGs and PNGs as encoders write them, in several sizes and modes."""
  rng = np.random.default_rng(0)

  def pixels(*shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)

  exif = Image.Exif()
  exif[0x010F] = 'camera maker ' * 40  # a long APP1 segment before the frame
  return [
      ('jpeg 32x32', pil_encoded(pixels(32, 32, 3), 'JPEG')),
      ('jpeg 17x45', pil_encoded(pixels(17, 45, 3), 'JPEG', quality=50)),
      ('jpeg gray 40x25', pil_encoded(pixels(40, 25), 'JPEG')),
      ('jpeg progressive 300x200', pil_encoded(pixels(300, 200, 3), 'JPEG', progressive=True)),
      ('jpeg optimized 64x1', pil_encoded(pixels(64, 1, 3), 'JPEG', optimize=True)),
      ('jpeg exif 33x31', pil_encoded(pixels(33, 31, 3), 'JPEG', exif=exif.tobytes())),
      ('jpeg by tf 7x9', tf.io.encode_jpeg(pixels(7, 9, 3)).numpy()),
      ('png 32x32', pil_encoded(pixels(32, 32, 3), 'PNG')),
      ('png gray 40x25', pil_encoded(pixels(40, 25), 'PNG')),
      ('png rgba 17x64', pil_encoded(pixels(17, 64, 4), 'PNG')),
      ('png 16-bit 5x6', tf.io.encode_png(rng.integers(0, 65535, (5, 6, 1), np.uint16)).numpy()),
      ('png by tf 300x200', tf.io.encode_png(pixels(300, 200, 3)).numpy()),
  ]


@pytest.mark.parametrize('name, data', real_files(), ids=[n for n, _ in real_files()])
def test_the_header_gives_the_size_tensorflow_decodes(name, data):
  decoded = tf.io.decode_image(data, expand_animations=False)
  assert image_header.declared_size(data) == tuple(decoded.shape[:2]), name
  if data.startswith(fixtures.jpeg_bomb(1, 1)[:3]):
    assert image_header.jpeg_size(data) == tuple(tf.image.extract_jpeg_shape(data).numpy()[:2])
  assert image_header.header_refusal(data, 300 * 200) is None


@pytest.mark.parametrize('height, width', [(16000, 16000), (65500, 1), (3, 65000)])
def test_a_jpeg_bomb_declares_the_size_libjpeg_reads(height, width):
  bomb = fixtures.jpeg_bomb(height, width)
  assert len(bomb) < 1000
  assert tuple(tf.image.extract_jpeg_shape(bomb).numpy()[:2]) == (height, width)
  assert image_header.declared_size(bomb) == (height, width)


def test_a_png_bomb_is_valid_and_declares_its_full_size():
  bomb = fixtures.png_bomb(16000, 16000)
  assert len(bomb) < 800_000  # 768 MB of pixels once decoded
  assert image_header.declared_size(bomb) == (16000, 16000)
  # PIL reads only the header on open (its own bomb guard is switched off here).
  limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
  try:
    assert Image.open(io.BytesIO(bomb)).size == (16000, 16000)  # PIL: (width, height)
  finally:
    Image.MAX_IMAGE_PIXELS = limit
  # The same construction at a size worth decoding: a valid, all-black PNG.
  small = tf.io.decode_png(fixtures.png_bomb(300, 200)).numpy()
  assert small.shape == (300, 200, 3) and not small.any()


def test_padding_between_jpeg_segments_does_not_hide_the_frame():
  """libjpeg passes over stray bytes, stuffed 0xFF00 pairs and fill bytes; so must we."""
  bomb = fixtures.jpeg_bomb(20000, 20000)
  first = 4 + int.from_bytes(bomb[4:6], 'big')  # past SOI and the first segment (APP0)
  padded = bomb[:first] + b'\x00\x12' * 25 + b'\xff\x00\xff\xff' + bomb[first:]
  assert tuple(tf.image.extract_jpeg_shape(padded).numpy()[:2]) == (20000, 20000)
  assert image_header.declared_size(padded) == (20000, 20000)


def test_the_refusal_names_the_size_and_the_limit():
  reason = image_header.header_refusal(fixtures.png_bomb(5000, 4000, channels=1), 16_000_000)
  assert reason == 'declares 5000x4000 pixels, over the limit 16000000'
  assert image_header.header_refusal(fixtures.png_bomb(4000, 4000, channels=1), 16_000_000) \
      is None  # the limit itself passes


@pytest.mark.parametrize('data, kind', [
    (b'\xff\xd8\xff', 'JPEG'),
    (b'\xff\xd8\xff\xda\x00\x08' + b'\x00' * 20, 'JPEG'),  # a scan before any frame
    (b'\x89PNG\r\n\x1a\n\x00\x00', 'PNG'),
    (b'\x89PNG\r\n\x1a\n' + b'\x00\x00\x00\x0dtEXt' + b'\x00' * 20, 'PNG'),  # no IHDR first
])
def test_a_header_without_a_size_is_refused_and_tensorflow_cannot_decode_it_either(data, kind):
  assert image_header.declared_size(data) is None
  assert image_header.header_refusal(data, 10**9) == f'no image size in its {kind} header'
  with pytest.raises(tf.errors.InvalidArgumentError):
    tf.io.decode_image(data)


def test_a_truncated_file_keeps_its_header():
  data = pil_encoded(np.zeros((64, 48, 3), np.uint8), 'JPEG')
  assert image_header.declared_size(data[:len(data) // 2]) == (64, 48)
  assert image_header.declared_size(b'not an image') is None


def test_the_serving_graph_reads_the_same_sizes():
  """components/serving.py's graph twin agrees with this reader, bombs included."""
  from components import serving
  blobs = [data for _, data in real_files()] + [
      fixtures.png_bomb(16000, 16000), fixtures.jpeg_bomb(20000, 30000),
      # An IHDR alone, with a width past 2**31.
      b'\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR' + struct.pack('>II', 4_000_000_000, 7),
      b'\x89PNG\r\n\x1a\n\x00\x00',  # no IHDR: no size
  ]
  sizes = tf.function(serving.declared_sizes)(tf.constant(blobs)).numpy()
  for data, (height, width) in zip(blobs, sizes):
    assert (image_header.declared_size(data) or (0, 0)) == (height, width)
