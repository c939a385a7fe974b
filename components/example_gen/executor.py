"""ImageExampleGen's Beam executor: images -> checked tf.Examples in train/eval TFRecords.

Beam graph:

    sources (image files | tfds shards) -> Reshuffle -> DecodeCheck ─┬─> Partition(train, eval) -> WriteSplit
                                                                      └─> bad images -> bad_images.txt

Every image is decoded once with the same decoder the transform graph uses
(`tf.io.decode_image`, 3 channels), so a file that would break training or
serving is caught here, named by path, and counted. Before that, its header
is read (components/image_header.py): an image that declares more than
`max_image_pixels` pixels (a decompression bomb) is skipped and listed the
same way, without being decoded. The encoded bytes are kept as they are:
decoding, resizing and normalizing belong to Transform.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import time

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from tfx import types
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components import features
from components import image_header
from components import progress
from components.example_gen import driver
from components.example_gen import sources
from tfx_pipeline import config as config_lib

METRICS_NAMESPACE = 'ImageExampleGen'
DATA_CONFIG_KEY = driver.DATA_CONFIG_KEY
EXAMPLES_KEY = 'examples'
TFDS_SHARDS = 8  # sub-splits of a tfds split, read in parallel
PROGRESS_EVERY = 5_000  # images checked per worker between progress lines
CONSOLE_LIST_LIMIT = 50  # skipped/ignored files named on the console (all are in files)


class RawImage(NamedTuple):
  image_id: str  # stable id: path under the input base (span folder included), or tfds id
  split: str  # output split: train | eval
  label: int
  data: Optional[bytes]  # None: read `relpath` from the tree
  relpath: Optional[str] = None  # path under the tree root


class BadImageError(RuntimeError):
  """Raised with the list of refused files when on_bad_image='fail'."""


class ImageFacts(NamedTuple):
  """What ExampleGen records about one image, beside its bytes and label."""
  height: int
  width: int
  channels: int  # in the file: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  means: Tuple[float, float, float]  # per RGB channel, 0..255
  contrast: float  # standard deviation of the luminance, 0..255
  encoded_bytes: int
  format: str  # jpeg | png


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


def check_image(data: bytes,
                max_pixels: int = config_lib.MAX_IMAGE_PIXELS) -> ImageFacts:
  """Facts about decodable image bytes; raises ValueError otherwise.

  Refuses, before decoding, an image whose header declares more than
  `max_pixels` pixels or whose size cannot be read from its header. Decodes
  once, in the file's own channels; the RGB view is what the transform graph's
  decode (3 channels) gives: gray replicated, alpha dropped.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not data:
    raise ValueError('empty file')
  if not features.is_jpeg_or_png(data):
    # tf.io.decode_image would take GIF and BMP too, which serving refuses.
    raise ValueError('not a JPEG or PNG file')
  refusal = image_header.header_refusal(data, max_pixels)
  if refusal:
    raise ValueError(refusal)
  try:
    image = tf.io.decode_image(data, channels=0, expand_animations=False).numpy()
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
    message = re.sub(r'\{\{[^}]*\}\}\s*', '', e.message).strip().splitlines()[0]
    raise ValueError(message) from None
  height, width, channels = image.shape
  if not height or not width:
    raise ValueError(f'decoded to an empty {height}x{width} image')
  rgb = image[..., :3] if channels >= 3 else np.repeat(image[..., :1], 3, axis=-1)
  rgb = rgb.astype(np.float32)
  luma = rgb @ np.array(LUMA, np.float32)
  return ImageFacts(
      height=int(height), width=int(width), channels=int(channels),
      means=tuple(float(m) for m in rgb.mean(axis=(0, 1))), contrast=float(luma.std()),
      encoded_bytes=len(data), format='jpeg' if data.startswith(features.JPEG_MAGIC) else 'png')


def to_example(image_id: str, data: bytes, label: int, facts: ImageFacts) -> bytes:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def ints(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

  def floats(value):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))

  def bytes_(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  feature = {
      features.IMAGE_KEY: bytes_(data),
      features.LABEL_KEY: ints(label),
      features.ID_KEY: bytes_(image_id.encode()),
      features.HEIGHT_KEY: ints(facts.height),
      features.WIDTH_KEY: ints(facts.width),
      features.CHANNELS_KEY: ints(facts.channels),
      features.CONTRAST_KEY: floats(facts.contrast),
      features.ENCODED_BYTES_KEY: ints(facts.encoded_bytes),
      features.FORMAT_KEY: bytes_(facts.format.encode()),
      **{key: floats(mean) for key, mean in zip(features.MEAN_KEYS, facts.means)},
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class _DecodeCheck(beam.DoFn):
  """RawImage -> serialized tf.Example, or a tagged 'bad' (id, split, reason)."""

  BAD = 'bad'

  def __init__(self, root: Optional[str], class_names: List[str], max_pixels: int):
    self._root = root
    self._class_names = class_names
    self._max_pixels = max_pixels

  def setup(self):
    self._checked, self._start = 0, time.perf_counter()

  def _progress(self):
    self._checked += 1
    if self._checked % PROGRESS_EVERY == 0:
      rate = self._checked / (time.perf_counter() - self._start)
      progress.LOGGER.info('ImageExampleGen: %d images checked by this worker (%.0f/s)',
                           self._checked, rate)

  def _count(self, what: str, split: str, label: int):
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, f'{what}:{split}').inc()
    beam.metrics.Metrics.counter(
        METRICS_NAMESPACE, f'{what}:{split}:{self._class_names[label]}').inc()

  def process(self, raw: RawImage):
    self._progress()
    self._count('read', raw.split, raw.label)
    try:
      data = raw.data if raw.data is not None else sources.read_file_in_tree(
          self._root, raw.relpath)
      facts = check_image(data, self._max_pixels)
    except (OSError, ValueError) as e:
      self._count('skipped', raw.split, raw.label)
      yield beam.pvalue.TaggedOutput(self.BAD, f'{raw.split}\t{raw.image_id}\t{e}')
      return
    self._count('written', raw.split, raw.label)
    yield raw.split, to_example(raw.image_id, data, raw.label, facts)


def _read_tfds_shard(shard: str, data: config_lib.DataConfig) -> Iterator[RawImage]:
  for image_id, blob, label in sources.read_tfds(data.tfds_name, shard, data.tfds_data_dir):
    split = sources.split_for(image_id, data.eval_percent, data.split_seed)
    yield RawImage(image_id, split, label, blob)


class _Source(NamedTuple):
  class_names: List[str]
  root: Optional[str]
  raw: beam.PTransform  # begin -> PCollection[RawImage]
  notes: Dict[str, Any]  # what the source left out, for logs and metadata


def _image_dir_source(data: config_lib.DataConfig, root: str) -> _Source:
  """The images of the tree at `root`: the plain --image-dir, or this run's span folder."""
  scan = sources.scan_image_tree(root)
  plan = sources.plan_splits(scan.splits)
  files = sources.cap_per_split(scan.files, data.max_examples, data.split_seed)
  prefix = sources.image_id_prefix(data.image_dir, root)
  raws = []
  # Hash order, not folder order: readers that take the first N records get a
  # mix of classes (Beam's DirectRunner keeps this order when writing).
  for f in sources.hash_order(files, data.split_seed):
    image_id = prefix + f.relpath
    # The split hashes the path inside the tree, not the span: an image keeps
    # its split whether it arrives in a span or in one plain tree.
    split = sources.output_split(f.split, f.relpath, plan, data.eval_percent, data.split_seed)
    if split:
      raws.append(RawImage(image_id, split, f.label, None, f.relpath))
  _log_list('ignored', [f'{path}: {reason}' for path, reason in scan.ignored])
  notes = {'ignored': [{'path': p, 'reason': r} for p, r in scan.ignored],
           'unused_splits': list(plan.unused),
           'eval_from': plan.eval or f'{plan.train} (hash, {data.eval_percent}%)'}
  return _Source(list(scan.class_names), scan.root, beam.Create(raws, reshuffle=False), notes)


def _tfds_source(data: config_lib.DataConfig) -> _Source:
  split = sources.TRAIN if data.max_examples is None else f'{sources.TRAIN}[:{data.max_examples}]'
  shards = sources.tfds_slices(split, TFDS_SHARDS)
  read = (beam.Create(shards, reshuffle=False)
          | 'ReadTfdsShard' >> beam.FlatMap(_read_tfds_shard, data))
  notes = {'ignored': [], 'unused_splits': ['test (held out)'],
           'eval_from': f'train (hash, {data.eval_percent}%)'}
  return _Source(list(sources.tfds_class_names(data.tfds_name, data.tfds_data_dir)), None, read, notes)


def _metric_counts(result: beam.runners.runner.PipelineResult) -> Dict[str, Any]:
  """Beam counters 'what:split[:class]' -> {split: {what: n, 'classes': {cls: {what: n}}}}."""
  counts: Dict[str, Any] = {s: {'read': 0, 'written': 0, 'skipped': 0, 'classes': {}}
                            for s in sources.OUTPUT_SPLITS}
  query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
  for counter in query['counters']:
    parts = counter.key.metric.name.split(':', 2)
    value = counter.committed if counter.committed is not None else counter.attempted
    if len(parts) == 2:
      counts[parts[1]][parts[0]] += value
    else:
      counts[parts[1]]['classes'].setdefault(parts[2], {})[parts[0]] = value
  return counts


class Executor(base_beam_executor.BaseBeamExecutor):
  """Writes Split-train and Split-eval of tf.Examples plus class names and counts."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    data = config_lib.DataConfig(**json.loads(exec_properties[DATA_CONFIG_KEY]))
    examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
    examples.split_names = artifact_utils.encode_split_names(list(sources.OUTPUT_SPLITS))
    # The driver resolved which span this run reads; without it (a direct
    # call), the newest span or the plain tree.
    resolved = exec_properties if driver.IMAGE_ROOT_KEY in exec_properties else \
        driver.resolve(data, '')
    span = int(resolved[driver.SPAN_KEY])
    # Span and version as artifact properties too: resolver ops and
    # StatisticsGen read those, TFX's driver writes only the custom property.
    examples.span, examples.version = span, int(resolved[driver.VERSION_KEY])
    examples.set_int_custom_property(driver.SPAN_KEY, span)
    source = _image_dir_source(data, resolved[driver.IMAGE_ROOT_KEY]) if data.image_dir \
        else _tfds_source(data)
    progress.LOGGER.info('ImageExampleGen: reading %s%s, %d classes', data.source_name,
                         f' (span {span}: {source.root})' if sources.has_spans(
                             data.image_dir or '') else '', len(source.class_names))

    pipeline = self._make_beam_pipeline()
    checked = (pipeline
               | 'Source' >> source.raw
               | 'Spread' >> beam.Reshuffle()
               | 'DecodeCheck' >> beam.ParDo(_DecodeCheck(source.root, source.class_names,
                                                    data.max_image_pixels))
               .with_outputs(_DecodeCheck.BAD, main='good'))
    by_split = checked.good | 'BySplit' >> beam.Partition(
        lambda kv, _: sources.OUTPUT_SPLITS.index(kv[0]), len(sources.OUTPUT_SPLITS))
    for index, split in enumerate(sources.OUTPUT_SPLITS):
      _ = (by_split[index]
           | f'Values[{split}]' >> beam.Values()
           | f'WriteSplit[{split}]' >> write_split.WriteSplit(
               artifact_utils.get_split_uri([examples], split),
               example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    _ = (checked[_DecodeCheck.BAD]
         | 'WriteBad' >> beam.io.WriteToText(
             os.path.join(examples.uri, features.BAD_IMAGES_FILE),
             shard_name_template='', num_shards=1))
    result = pipeline.run()
    result.wait_until_finish()

    counts = _metric_counts(result)
    bad = _read_lines(os.path.join(examples.uri, features.BAD_IMAGES_FILE))
    self._record(examples, data, source, counts, bad)
    if bad and data.on_bad_image == 'fail':
      raise BadImageError(
          f'{len(bad)} undecodable or oversized image(s) and --on-bad-image fail:\n'
          + '\n'.join(bad))
    for split in sources.OUTPUT_SPLITS:
      if not counts[split]['written']:
        raise sources.SourceError(f'no usable images landed in the {split} split '
                                  f'of {data.source_name}')

  @staticmethod
  def _record(examples, data, source: _Source, counts, bad: List[str]) -> None:
    """Class names, counts and skipped files: in the artifact dir, MLMD and the log."""
    features.write_class_names(examples.uri, source.class_names)
    summary = {'splits': counts, 'skipped_files': bad, **source.notes}
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(os.path.join(examples.uri, features.COUNTS_FILE), 'w') as f:
      json.dump(summary, f, indent=1)
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(
        examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    examples.set_string_custom_property('class_names', json.dumps(source.class_names))
    examples.set_string_custom_property('source', data.source_name)
    for split in sources.OUTPUT_SPLITS:
      for what in ('read', 'written', 'skipped'):
        examples.set_int_custom_property(f'{split}_{what}', counts[split][what])
    examples.set_int_custom_property('ignored_files', len(source.notes['ignored']))
    for split in sources.OUTPUT_SPLITS:
      c = counts[split]
      progress.LOGGER.info('ImageExampleGen %s: read %d, written %d, skipped %d',
                           split, c['read'], c['written'], c['skipped'])
    _log_list('skipped (undecodable, or over --max-image-pixels)',
              [line.replace('\t', ' ') for line in bad])


def _log_list(what: str, lines: List[str]) -> None:
  """Names up to CONSOLE_LIST_LIMIT entries on the console, then how many more."""
  if not lines:
    return
  progress.LOGGER.info('ImageExampleGen %s %d file(s):', what, len(lines))
  for line in lines[:CONSOLE_LIST_LIMIT]:
    progress.LOGGER.info('  %s', line)
  if len(lines) > CONSOLE_LIST_LIMIT:
    progress.LOGGER.info('  ... and %d more (see %s and %s in the Examples artifact)',
                         len(lines) - CONSOLE_LIST_LIMIT, features.BAD_IMAGES_FILE,
                         features.COUNTS_FILE)


def _read_lines(path: str) -> List[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return sorted(line.rstrip('\n') for line in f if line.strip())
