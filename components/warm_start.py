"""Warm start: begin training from the last blessed model's weights.

The Trainer's `base_model` input (fed by LatestBlessedModelResolver) points
at the blessed model's `Format-Serving` directory. Beside it, every Trainer
run leaves `Format-Keras/`: the Keras weights, a description of the
architecture (weight shapes and class names) and the training file patterns
it read (so a warm start can tell new data from seen data). A new run
starts from those weights only when its freshly built model has the same
description; any difference (another width, another class list) means a
cold start, and the reason says why.

    plan(base_model, model, class_names, enabled) -> Plan(source, reason)
    save(model, class_names, model_uri, train_files)    # after training
    load(model, plan.source)                            # before training
    split_window(train_files, seen_train_files(source))  # (new, seen): replay

Which blessed model: `BlessedModelBeforeNewestSpan`, a resolver strategy.
The latest blessed model that was not trained on the newest span: on the
first run of a span, the last blessed model; on a re-run of the same span
(cron with no new data, a crash), the same model again, so the Trainer's
inputs do not change and MLMD's cache holds. A plain tree (span 0 always)
never warm-starts: re-running it stays a cache hit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf
from tfx.dsl.components.common import resolver

KERAS_DIR = 'Format-Keras'  # beside TFX's Format-Serving in the Model artifact
WEIGHTS_FILE = 'model.weights.h5'
ARCHITECTURE_FILE = 'architecture.json'
TRAIN_FILES_FILE = 'train_files.json'  # the training file patterns the model saw
PLAN_FILE = 'warm_start.json'  # in the model run directory, for the run summary


class Plan(NamedTuple):
  source: Optional[str]  # Format-Keras directory to load; None: cold start
  reason: str  # one line for the run summary

  def as_dict(self) -> Dict[str, Any]:
    return {'warm': self.source is not None, 'source': self.source, 'reason': self.reason}


def architecture(model, class_names: Sequence[str]) -> Dict[str, List]:
  """What must match for weights to carry over: every weight's shape, and the classes."""
  return {'weight_shapes': [list(w.shape) for w in model.weights],
          'class_names': list(class_names)}


def keras_dir(model_uri: str) -> str:
  return os.path.join(model_uri, KERAS_DIR)


def save(model, class_names: Sequence[str], model_uri: str,
         train_files: Sequence[str] = ()) -> None:
  """Writes the weights, their architecture and the training file patterns they saw
  under `model_uri`/Format-Keras."""
  from components import checkpoint  # pylint: disable=g-import-not-at-top  (imports Keras)
  target = keras_dir(model_uri)
  tf.io.gfile.makedirs(target)
  # Keras writes .weights.h5 to local paths only; copy through gfile.
  tmp = tempfile.mkdtemp(prefix='warm-start-')
  try:
    checkpoint.ensure_room(model, tmp, 'the warm-start weights (Format-Keras)')
    local = os.path.join(tmp, WEIGHTS_FILE)
    model.save_weights(local)
    tf.io.gfile.copy(local, os.path.join(target, WEIGHTS_FILE), overwrite=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  with tf.io.gfile.GFile(os.path.join(target, ARCHITECTURE_FILE), 'w') as f:
    json.dump(architecture(model, class_names), f)
  with tf.io.gfile.GFile(os.path.join(target, TRAIN_FILES_FILE), 'w') as f:
    json.dump(sorted(train_files), f)


def seen_train_files(source: str) -> List[str]:
  """The training file patterns the model in `source` (Format-Keras) trained on; [] when
  it did not record them (a model saved before they were recorded)."""
  path = os.path.join(source, TRAIN_FILES_FILE)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return list(json.load(f))


def _difference(saved: Dict[str, List], wanted: Dict[str, List]) -> str:
  if saved['class_names'] != wanted['class_names']:
    return f"classes differ ({saved['class_names']} vs {wanted['class_names']})"
  if len(saved['weight_shapes']) != len(wanted['weight_shapes']):
    return (f"{len(saved['weight_shapes'])} weight tensors vs "
            f"{len(wanted['weight_shapes'])}")
  for i, (a, b) in enumerate(zip(saved['weight_shapes'], wanted['weight_shapes'])):
    if a != b:
      return f'weight {i} has shape {a} vs {b}'
  return ''


def plan(base_model: Optional[str], model, class_names: Sequence[str], enabled: bool) -> Plan:
  """Whether to warm-start `model` (freshly built) from `base_model` (Format-Serving path)."""
  if not enabled:
    return Plan(None, 'cold start: warm start is off (--from-scratch)')
  if not base_model:
    return Plan(None, 'cold start: no blessed model of an earlier span '
                      '(a plain image tree never warm-starts)')
  source = keras_dir(os.path.dirname(base_model.rstrip('/')))
  path = os.path.join(source, ARCHITECTURE_FILE)
  if not tf.io.gfile.exists(path):
    return Plan(None, f'cold start: the blessed model has no {KERAS_DIR}/ weights ({source})')
  with tf.io.gfile.GFile(path) as f:
    saved = json.load(f)
  difference = _difference(saved, architecture(model, class_names))
  if difference:
    return Plan(None, f'cold start: the blessed model differs in architecture: {difference}')
  return Plan(source, f'warm start from the blessed model {os.path.dirname(source)}')


def _span_of(mlmd_artifact) -> int:
  """The `span` property (or custom property) of an MLMD artifact; 0 without one."""
  for props in (mlmd_artifact.properties, mlmd_artifact.custom_properties):
    if 'span' in props:
      return props['span'].int_value
  return 0


def trained_spans(store, model_id: int) -> List[int]:
  """Spans of the Examples that the Trainer execution producing `model_id` read."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  event = metadata_store_pb2.Event
  producers = [e.execution_id for e in store.get_events_by_artifact_ids([model_id])
               if e.type == event.OUTPUT]
  inputs = [e.artifact_id for e in store.get_events_by_execution_ids(producers)
            if e.type == event.INPUT and e.path.steps and e.path.steps[0].key == 'examples']
  return [_span_of(a) for a in store.get_artifacts_by_id(inputs)]


class BlessedModelBeforeNewestSpan(resolver.ResolverStrategy):
  """The latest blessed model not trained on the newest span (inputs: model, model_blessing,
  examples); nothing when there is none."""

  def resolve_artifacts(self, store, input_dict):
    models = {m.id: m for m in input_dict['model']}
    spans = [_span_of(e.mlmd_artifact) for e in input_dict['examples']]
    empty = {key: [] for key in input_dict}
    if not spans or not models:
      return empty
    newest = max(spans)
    blessings = sorted((b for b in input_dict['model_blessing']
                        if b.get_int_custom_property('blessed') == 1), key=lambda b: -b.id)
    for blessing in blessings:
      model = models.get(blessing.get_int_custom_property('current_model_id'))
      if model is not None and newest not in trained_spans(store, model.id):
        return {**empty, 'model': [model], 'model_blessing': [blessing]}
    return empty


def split_window(train_files: Sequence[str], seen: Sequence[str]) -> Tuple[List[str], List[str]]:
  """(new, seen): this run's training file patterns that the base model did not and did
  train on, each in this run's order."""
  before = set(seen)
  return ([f for f in train_files if f not in before], [f for f in train_files if f in before])


def load(model, source: str) -> None:
  """Loads the weights that `plan` chose into `model`."""
  tmp = tempfile.mkdtemp(prefix='warm-start-')
  try:
    local = os.path.join(tmp, WEIGHTS_FILE)
    tf.io.gfile.copy(os.path.join(source, WEIGHTS_FILE), local, overwrite=True)
    model.load_weights(local)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
