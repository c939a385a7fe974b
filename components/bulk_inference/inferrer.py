"""BulkInferrer's executor, plus the readable output: predictions.jsonl beside the logs.

TFX's BulkInferrer (tfx.v1.components.BulkInferrer) writes PredictionLog
protos: each holds the request (the serialized tf.Example, encoded image
included) and the response tensors. Nobody reads those by eye, so this
executor's Beam graph writes, beside TFX's logs, a JSON Lines file in the
same InferenceResult artifact, one row per image (components/bulk_inference/
rows.py): the image's path relative to `--infer-dir`, the top class, its
probability, and the top k. It copies FolderExampleGen's skipped.txt there
too, so one directory holds what was scored and what was not.

    Split-infer -> parse -> RunInference (tfx_bsl, TF1 session) ─┬─> prediction_logs-*.gz
                                                                  └─> predictions.jsonl

Two departures from TFX's executor, both in this file:
- tfx_bsl 1.16's predict post-processing fails on a string output with one
  value per example (our signatures' `class_names`): it asks the row, a
  Python `bytes`, for its `.dtype`. The model loader (`load_session`, tfx_bsl's
  `load_override_fn`, the same TF1 session load as TF Serving's) hands such
  outputs back as a fixed-width numpy bytes array, whose rows have one.
- With no blessed model at all (a first run that the Evaluator refused), TFX's
  executor would fail the run on the missing model; this one scores nothing
  and says so in the artifact (`scored_by` is empty), and the summary prints it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import apache_beam as beam
import numpy as np
from absl import logging
from tfx import types
from tfx import v1 as tfx
from tfx.components.bulk_inferrer import executor as tfx_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx_bsl.public.beam import run_inference

from components import features
from components import progress
from components.bulk_inference import example_gen
from components.bulk_inference import rows

TOP_K = 3  # ranked classes a row holds (the client's default --top-k)
PREDICTION_LOGS = 'prediction_logs'  # TFX's file prefix, gzipped TFRecords


class _BytesOutputs:
  """A TF1 session whose string outputs come back as fixed-width bytes arrays."""

  def __init__(self, session):
    self._session = session

  def run(self, fetches, feed_dict=None):
    return {alias: np.asarray(list(value), dtype=bytes)
            if isinstance(value, np.ndarray) and value.dtype == object else value
            for alias, value in self._session.run(fetches, feed_dict=feed_dict).items()}

  def __getattr__(self, name):
    return getattr(self._session, name)


def load_session(model_path: str, tags: Sequence[str]) -> _BytesOutputs:
  """The SavedModel in a TF1 session (as tfx_bsl and TF Serving load it)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  session = tf.compat.v1.Session(graph=tf.compat.v1.Graph())
  tf.compat.v1.saved_model.loader.load(session, list(tags), model_path)
  return _BytesOutputs(session)


def log_rows(log, k: int, class_names: Optional[Sequence[str]]) -> List[dict]:
  """The rows of one PredictionLog of the tf.Example signature (tfx_bsl: one example)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  request, response = log.predict_log.request, log.predict_log.response
  serialized, = request.inputs.values()  # the signature's one input: tf.Examples
  examples = list(serialized.string_val)
  probabilities = tf.make_ndarray(response.outputs[features.PROBABILITIES])
  probabilities = probabilities.reshape(len(examples), -1)
  return [rows.prediction_row(example_gen.image_path(e), p, k, class_names)
          for e, p in zip(examples, probabilities)]


def model_class_names(model_path: str) -> Optional[List[str]]:
  """The exported model's class names (assets.extra/class_names.json), if it has them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components import serving  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_path, serving.CLASS_NAMES_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return [str(n) for n in json.load(f)]


def copy_skipped(examples: Sequence[types.Artifact], out_dir: str) -> int:
  """FolderExampleGen's skipped.txt into `out_dir`; returns how many files it lists."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  lines: List[str] = []
  for artifact in examples:
    path = os.path.join(artifact.uri, rows.SKIPPED_FILE)
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        lines.extend(line for line in f if line.strip())
  with tf.io.gfile.GFile(os.path.join(out_dir, rows.SKIPPED_FILE), 'w') as f:
    f.write(''.join(lines))
  return len(lines)


def count_lines(path: str) -> int:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    return 0
  with tf.io.gfile.GFile(path) as f:
    return sum(1 for line in f if line.strip())


class Executor(tfx_executor.Executor):
  """TFX's BulkInferrer executor; its Beam graph also writes predictions.jsonl."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    result = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.INFERENCE_RESULT_KEY])
    skipped = copy_skipped(input_dict[standard_component_specs.EXAMPLES_KEY], result.uri)
    result.set_int_custom_property('skipped', skipped)
    result.set_int_custom_property('scored', 0)
    result.set_string_custom_property('scored_by', '')
    models = input_dict.get(standard_component_specs.MODEL_KEY) or []
    if not models:
      logging.info('BulkInferrer: no blessed model yet: nothing scored')
      return
    super().Do(input_dict, output_dict, exec_properties)  # -> _run_model_inference
    out_path = os.path.join(result.uri, rows.PREDICTIONS_FILE)
    scored = count_lines(out_path)
    result.set_string_custom_property('scored_by', models[0].uri)
    result.set_string_custom_property('predictions', out_path)
    result.set_int_custom_property('scored', scored)
    progress.LOGGER.info('BulkInferrer: %d images scored, %d files skipped: %s',
                         scored, skipped, out_path)

  def _run_model_inference(self, data_spec, output_example_spec, examples, output_examples,
                           inference_result, inference_endpoint) -> None:
    """Split-infer -> PredictionLogs (TFX's file) and predictions.jsonl, in one Beam graph."""
    del data_spec, output_example_spec, output_examples  # one split; no output examples
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
    class_names = model_class_names(inference_endpoint.saved_model_spec.model_path)
    patterns = [io_utils.all_files_pattern(artifact_utils.get_split_uri([a], example_gen.SPLIT))
                for a in examples]
    with self._make_beam_pipeline() as pipeline:
      logs = (pipeline
              | 'Patterns' >> beam.Create(patterns)
              | 'ReadExamples' >> beam.io.ReadAllFromTFRecord()
              | 'Parse' >> beam.Map(tf.train.Example.FromString)
              | 'RunInference' >> run_inference.RunInference(
                  inference_endpoint, load_override_fn=load_session))
      _ = logs | 'WritePredictionLogs' >> beam.io.WriteToTFRecord(
          os.path.join(inference_result.uri, PREDICTION_LOGS), file_name_suffix='.gz',
          coder=beam.coders.ProtoCoder(prediction_log_pb2.PredictionLog))
      _ = (logs
           | 'Rows' >> beam.FlatMap(log_rows, TOP_K, class_names)
           | 'Lines' >> beam.Map(lambda row: rows.jsonl_line(row).rstrip('\n'))
           | 'WriteRows' >> beam.io.WriteToText(
               os.path.join(inference_result.uri, rows.PREDICTIONS_FILE),
               shard_name_template='', num_shards=1))


def specs() -> Dict[str, Any]:
  """The BulkInferrer's data and model specs: FolderExampleGen's split, the tf.Example signature."""
  return {'data_spec': tfx.proto.DataSpec(example_splits=[example_gen.SPLIT]),
          'model_spec': tfx.proto.ModelSpec(model_signature_name=[features.EXAMPLE_SIGNATURE])}


class BulkInferrer(tfx.components.BulkInferrer):
  """TFX's BulkInferrer component (same inputs and outputs), run by this module's Executor."""
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)


def bulk_inferrer(examples, model, model_blessing) -> BulkInferrer:
  """TFX's BulkInferrer through the `serving_tf_example` signature, with this executor."""
  return BulkInferrer(examples=examples, model=model, model_blessing=model_blessing, **specs())
