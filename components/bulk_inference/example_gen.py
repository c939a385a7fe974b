"""FolderExampleGen: a folder of new, unlabelled images -> checked tf.Examples to score.

    --infer-dir DIR (any layout) -> Reshuffle -> DecodeCheck ─┬─> Split-infer (tf.Examples)
                                                              └─> skipped.txt (path, reason)

The BulkInferrer scores its tf.Examples through the model's
`serving_tf_example` signature, which refuses a whole batch when one image in
it is undecodable or over `max_image_pixels`. So every file is checked here
first, with the checks ImageExampleGen makes before training (the header
before decoding, then TensorFlow's decoder): a file that fails is skipped and
listed by path with its reason, and never reaches the model. An example holds
the encoded bytes as they are and the path relative to DIR (the row's
`path` in predictions.jsonl); there is no label.

The driver fingerprints the folder (paths, sizes, modification times), so
MLMD's cache re-reads it when its files change, and only then.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import apache_beam as beam
from tfx import types
from tfx import v1 as tfx
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.v1.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components import features
from components import progress
from components.bulk_inference import rows
from components.example_gen import driver as image_driver
from components.example_gen import sources
from components.example_gen.executor import check_image

SPLIT = 'infer'  # the one split; the BulkInferrer's DataSpec names it
IMAGE_DIR_KEY = 'image_dir'
MAX_PIXELS_KEY = 'max_image_pixels'
CODE_DIGEST_KEY = image_driver.CODE_DIGEST_KEY
EXAMPLES_KEY = 'examples'
_BEAM_BAD_FILE = '.bad_images'  # the Beam step's part of skipped.txt


def to_example(relpath: str, data: bytes) -> bytes:
  """A serialized tf.Example: the encoded image and its path (no label)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def bytes_(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  return tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE_KEY: bytes_(data), features.ID_KEY: bytes_(relpath.encode())
  })).SerializeToString()


def image_path(example: bytes) -> str:
  """The path (relative to the folder) that `to_example` recorded."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  parsed = tf.train.Example.FromString(example)
  return parsed.features.feature[features.ID_KEY].bytes_list.value[0].decode()


class _DecodeCheck(beam.DoFn):
  """relpath -> serialized tf.Example, or a tagged 'bad' `path<TAB>reason` line."""

  BAD = 'bad'

  def __init__(self, root: str, max_pixels: int):
    self._root = root
    self._max_pixels = max_pixels

  def process(self, relpath: str):
    try:
      data = sources.read_file_in_tree(self._root, relpath)
      check_image(data, self._max_pixels)
    except (OSError, ValueError) as e:
      yield beam.pvalue.TaggedOutput(self.BAD, rows.skipped_line(relpath, str(e)).rstrip('\n'))
      return
    yield to_example(relpath, data)


def _read_lines(path: str) -> List[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [line.rstrip('\n') for line in f if line.strip()]


class Executor(base_beam_executor.BaseBeamExecutor):
  """Writes Split-infer (the good images) and skipped.txt (the rest, with reasons)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    del input_dict
    root = exec_properties[IMAGE_DIR_KEY]
    examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
    examples.split_names = artifact_utils.encode_split_names([SPLIT])
    files, left_out = rows.walk_folder(root)
    progress.LOGGER.info('FolderExampleGen: checking %d files in %s', len(files), root)
    pipeline = self._make_beam_pipeline()
    checked = (pipeline
               | 'Files' >> beam.Create(files, reshuffle=False)
               | 'Spread' >> beam.Reshuffle()
               | 'DecodeCheck' >> beam.ParDo(_DecodeCheck(root, int(exec_properties[
                   MAX_PIXELS_KEY]))).with_outputs(_DecodeCheck.BAD, main='good'))
    _ = checked.good | 'WriteSplit' >> write_split.WriteSplit(
        artifact_utils.get_split_uri([examples], SPLIT), example_gen_pb2.FORMAT_TFRECORDS_GZIP)
    _ = checked[_DecodeCheck.BAD] | 'WriteBad' >> beam.io.WriteToText(
        os.path.join(examples.uri, _BEAM_BAD_FILE), shard_name_template='', num_shards=1)
    pipeline.run().wait_until_finish()
    self._record(examples, root, len(files), left_out)

  @staticmethod
  def _record(examples, root: str, candidates: int, left_out) -> None:
    """skipped.txt, counts in MLMD, and the console's line."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    beam_bad = os.path.join(examples.uri, _BEAM_BAD_FILE)
    bad = _read_lines(beam_bad)
    if tf.io.gfile.exists(beam_bad):
      tf.io.gfile.remove(beam_bad)
    skipped = sorted(bad + [rows.skipped_line(p, r).rstrip('\n') for p, r in left_out])
    with tf.io.gfile.GFile(os.path.join(examples.uri, rows.SKIPPED_FILE), 'w') as f:
      f.write(''.join(line + '\n' for line in skipped))
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(
        examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    examples.set_string_custom_property('source', f'image folder {root}')
    examples.set_int_custom_property('files', candidates + len(left_out))
    examples.set_int_custom_property('written', candidates - len(bad))
    examples.set_int_custom_property('skipped', len(skipped))
    progress.LOGGER.info('FolderExampleGen: %d images to score, %d files skipped',
                         candidates - len(bad), len(skipped))


class Driver(example_gen_driver.Driver):
  """Span 0, version 0, and the folder's fingerprint (TFX's driver puts them on the artifact)."""

  def resolve_exec_properties(self, exec_properties: Dict[str, Any], pipeline_info,
                              component_info) -> Dict[str, Any]:
    del pipeline_info, component_info
    root = exec_properties[IMAGE_DIR_KEY]
    exec_properties.update({
        image_driver.SPAN_KEY: 0, image_driver.VERSION_KEY: 0,
        image_driver.FINGERPRINT_KEY: f'{sources.fingerprint_tree(root)}:'
                                      f'{exec_properties.get(CODE_DIGEST_KEY, "")}'})
    return exec_properties


class FolderExampleGenSpec(types.ComponentSpec):
  PARAMETERS = {
      IMAGE_DIR_KEY: ExecutionParameter(type=str),
      MAX_PIXELS_KEY: ExecutionParameter(type=int),
      CODE_DIGEST_KEY: ExecutionParameter(type=str),
  }
  INPUTS = {}
  OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class FolderExampleGen(tfx.types.BaseBeamComponent):
  SPEC_CLASS = FolderExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
  DRIVER_CLASS = Driver

  def __init__(self, image_dir: str, max_image_pixels: int, code_digest: str):
    super().__init__(spec=FolderExampleGenSpec(
        image_dir=image_dir, max_image_pixels=max_image_pixels, code_digest=code_digest,
        examples=types.Channel(type=standard_artifacts.Examples)))
