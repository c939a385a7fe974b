"""Image dimensions read from the header bytes, before anything is decoded.

A PNG or JPEG file states its height and width in its first bytes, and a
decoder allocates height x width x channels bytes for the pixels (TensorFlow
then casts them to float32, four times that again) before it reads the
compressed data. The data can be tiny: a 746 KB PNG of zeros declares
16000x16000 pixels and costs 3.8 GB to decode and preprocess. Every reader
that takes images from outside therefore asks the header first and refuses an
image that declares more than a configured pixel count
(`DataConfig.max_image_pixels`, tfx_pipeline/config.py):

- ImageExampleGen (components/example_gen/executor.py) skips and lists it, as
  it does undecodable files; any other reader of image files (a batch
  inference reader, a script) calls `header_refusal` the same way before it
  decodes;
- the serving signatures (components/serving.py) do the same in graph ops,
  `tf.image.extract_jpeg_shape` and the PNG IHDR bytes, and refuse the
  request with an InvalidArgumentError.

This module is the pure-Python reader: no TensorFlow, no decoding, only the
header bytes. tests/test_image_header.py checks that it agrees with
TensorFlow's decoders on real files and on such bombs.
"""

from __future__ import annotations

from typing import Optional, Tuple

from components import features

# PNG: the 8-byte signature, then the IHDR chunk: length (4), type 'IHDR' (4),
# width (4), height (4), both big-endian unsigned.
PNG_IHDR_TYPE_OFFSET = 12
PNG_WIDTH_OFFSET = 16
PNG_HEIGHT_OFFSET = 20
PNG_HEADER_BYTES = 24  # signature + IHDR up to the end of the height
# JPEG start-of-frame markers (0xFFC0-0xFFCF) carry the frame's size; 0xC4
# (DHT), 0xC8 (JPG, reserved) and 0xCC (DAC) share the range but are not SOFs.
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and the restart markers RST0-RST7.
JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])
JPEG_SOS, JPEG_EOI = 0xDA, 0xD9  # the scan starts, the image ends: no SOF before them


def _u16(data: bytes, offset: int) -> int:
  return int.from_bytes(data[offset:offset + 2], 'big')


def _u32(data: bytes, offset: int) -> int:
  return int.from_bytes(data[offset:offset + 4], 'big')


def png_size(data: bytes) -> Optional[Tuple[int, int]]:
  """(height, width) from a PNG's IHDR chunk, or None if `data` has none."""
  if not data.startswith(features.PNG_MAGIC) or len(data) < PNG_HEADER_BYTES:
    return None
  if data[PNG_IHDR_TYPE_OFFSET:PNG_WIDTH_OFFSET] != b'IHDR':
    return None
  return _u32(data, PNG_HEIGHT_OFFSET), _u32(data, PNG_WIDTH_OFFSET)


def jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
  """(height, width) from a JPEG's first start-of-frame segment, or None if it has none.

  Walks the marker segments after SOI (each 0xFF, a marker byte, then a
  big-endian length that counts itself) up to the first SOF, whose payload is
  precision (1 byte), height (2), width (2): the header libjpeg reads. Like
  libjpeg, it passes over stray bytes between segments (libjpeg warns
  "extraneous bytes before marker" and goes on), so padding cannot hide a SOF.
  """
  if not data.startswith(features.JPEG_MAGIC):
    return None
  i = 2
  while i + 1 < len(data):
    if data[i] != 0xFF:
      i += 1  # a stray byte where a marker should start
      continue
    marker = data[i + 1]
    if marker == 0xFF:  # fill byte before a marker
      i += 1
    elif marker == 0x00 or marker in JPEG_STANDALONE_MARKERS:  # 0xFF00: a stuffed byte
      i += 2
    elif marker in (JPEG_SOS, JPEG_EOI):
      return None
    elif marker in JPEG_SOF_MARKERS:
      if i + 9 > len(data):
        return None
      return _u16(data, i + 5), _u16(data, i + 7)
    else:
      length = _u16(data, i + 2)
      if length < 2:
        return None
      i += 2 + length
  return None


def declared_size(data: bytes) -> Optional[Tuple[int, int]]:
  """(height, width) that a JPEG or PNG file's header declares; None if it cannot tell."""
  return png_size(data) if data.startswith(features.PNG_MAGIC) else jpeg_size(data)


def too_large_reason(height: int, width: int, max_pixels: int) -> str:
  """The words every reader uses when it refuses an image for its size."""
  return f'declares {height}x{width} pixels, over the limit {max_pixels}'


def header_refusal(data: bytes, max_pixels: int) -> Optional[str]:
  """Why a JPEG or PNG file must not be decoded, or None when its header allows it.

  Refused: a header that declares more than `max_pixels` pixels, and one whose
  size cannot be read at all (a reader that decodes only what it has measured
  never allocates for a size it did not check).
  """
  size = declared_size(data)
  if size is None:
    kind = 'PNG' if data.startswith(features.PNG_MAGIC) else 'JPEG'
    return f'no image size in its {kind} header'
  if size[0] * size[1] > max_pixels:
    return too_large_reason(*size, max_pixels)
  return None
