"""What a run did, read back from MLMD: progress lines while it runs, a summary after.

Nothing here drives the pipeline; it only reads the SQLite metadata store
that the LocalDagRunner writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from typing import Dict, List, Optional, Sequence

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.features import CLASS_NAMES_FILE
from components.features import LABEL_KEY
from tfx_pipeline.config import ACCURACY_METRIC
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.config import absolute

_State = metadata_store_pb2.Execution.State
_DONE = {_State.COMPLETE: 'done', _State.CACHED: 'cached', _State.FAILED: 'FAILED',
         _State.CANCELED: 'canceled'}


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
  """A read-only handle on the SQLite metadata store."""
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def format_seconds(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f'{seconds}s'
  minutes, seconds = divmod(seconds, 60)
  if minutes < 60:
    return f'{minutes}m{seconds:02d}s'
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m'


@dataclasses.dataclass
class ComponentRun:
  node_id: str
  state: str  # done | cached | FAILED | running | ...
  seconds: float
  execution: metadata_store_pb2.Execution


def component_runs(metadata_path: str, pipeline_name: str,
                   since: float) -> List[ComponentRun]:
  """Executions of `pipeline_name` created after `since` (epoch seconds), in order."""
  if not os.path.exists(metadata_path):
    return []
  store = open_store(metadata_path)
  prefix = pipeline_name + '.'
  runs = []
  for execution in store.get_executions():
    if execution.create_time_since_epoch < since * 1000:
      continue
    node_ids = [c.name[len(prefix):] for c in store.get_contexts_by_execution(execution.id)
                if c.name.startswith(prefix)]
    if not node_ids:
      continue
    state = _DONE.get(execution.last_known_state, 'running')
    seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3
    runs.append(ComponentRun(node_ids[0], state, seconds, execution))
  runs.sort(key=lambda r: r.execution.create_time_since_epoch)
  return runs


def progress_lines(run: ComponentRun, before: Optional[str], since: float) -> List[str]:
  """What to print for `run`, whose state at the previous poll was `before` (None: unseen).

  Every component gets a 'started' line, stamped with the time MLMD recorded
  for its start, even when the first poll that sees it finds it already
  finished: a fast component can start and end between two polls.
  """
  if before == run.state:
    return []

  def stamp(ms: float) -> str:
    return f'[{format_seconds(max(0.0, ms / 1e3 - since)):>7}]'

  lines = []
  if before is None:
    lines.append(f'{stamp(run.execution.create_time_since_epoch)} {run.node_id} started')
  if run.state != 'running':
    lines.append(f'{stamp(run.execution.last_update_time_since_epoch)} {run.node_id} '
                 f'{run.state} in {format_seconds(run.seconds)}')
  return lines


class ProgressPrinter:
  """Prints one line when each component starts and one when it finishes."""

  def __init__(self, metadata_path: str, pipeline_name: str, since: float,
               interval: float = 2.0, out=print):
    self._args = (metadata_path, pipeline_name, since)
    self._interval = interval
    self._out = out
    self._seen: Dict[int, str] = {}
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.poll()  # report what finished since the last poll

  def _loop(self):
    while not self._stop.wait(self._interval):
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except  # MLMD busy: try again
        pass

  def poll(self):
    for run in component_runs(*self._args):
      for line in progress_lines(run, self._seen.get(run.execution.id), self._args[2]):
        self._out(line)
      self._seen[run.execution.id] = run.state


@dataclasses.dataclass
class Summary:
  runs: List[ComponentRun]
  blessed: Optional[bool]
  gate_reason: str
  pushed_to: Optional[str]
  wall_seconds: float
  serving_check: Optional[bool] = None  # ServingCheck's verdict (TF Serving's loader path)
  serving_check_words: str = ''
  paths: List[str] = dataclasses.field(default_factory=list)  # spans, tuner, warm start
  compute: str = ''  # training TFLOP of the Tuner and the Trainer (compute_line)
  report: Optional[str] = None  # path of report.html, when it was written
  pipeline_root: Optional[str] = None  # for the TensorBoard command
  predictions: List[str] = dataclasses.field(default_factory=list)  # --infer-dir's lines

  def text(self) -> str:
    lines = ['', f'Run finished in {format_seconds(self.wall_seconds)}:']
    for run in self.runs:
      lines.append(f'  {run.node_id:28s} {run.state:8s} {format_seconds(run.seconds):>8}')
    if self.compute:
      lines.append(self.compute)
    lines.extend(self.paths)
    if self.blessed is None:
      lines.append('Evaluator: no result (the pipeline stopped before it)')
    elif self.blessed:
      lines.append(f'Evaluator: BLESSED. {self.gate_reason}')
    else:
      lines.append(f'Evaluator: NOT blessed, nothing pushed. {self.gate_reason}')
    if self.serving_check is not None:
      verdict = 'passed' if self.serving_check else 'FAILED, nothing pushed'
      lines.append(f'Serving check: {verdict}: {self.serving_check_words}')
    if self.pushed_to:
      lines.append(f'Pushed: {self.pushed_to}')
    lines.extend(self.predictions)
    if self.report:
      lines.append(f'Report: {self.report}')
    if self.pipeline_root:
      lines.append(f'TensorBoard: tensorboard --logdir {self.pipeline_root}')
    return '\n'.join(lines)


def _output_artifacts(store, execution_id: int):
  events = [e for e in store.get_events_by_execution_ids([execution_id])
            if e.type == metadata_store_pb2.Event.OUTPUT]
  return store.get_artifacts_by_id([e.artifact_id for e in events])


def artifacts_by_key(store, execution_id: int,
                     inputs: bool = False) -> Dict[str, List[metadata_store_pb2.Artifact]]:
  """An execution's output (or input) artifacts by their channel key ('model', ...).

  MLMD stores the key as the first step of each event's path; a cached
  execution has output events too, pointing at the artifacts it reused.
  """
  wanted = metadata_store_pb2.Event.INPUT if inputs else metadata_store_pb2.Event.OUTPUT
  events = [e for e in store.get_events_by_execution_ids([execution_id])
            if e.type == wanted and e.path.steps]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  result: Dict[str, List[metadata_store_pb2.Artifact]] = {}
  for e in events:
    if e.artifact_id in artifacts:
      result.setdefault(e.path.steps[0].key, []).append(artifacts[e.artifact_id])
  return result


def _int_property(artifact, name: str) -> Optional[int]:
  if name in artifact.custom_properties:
    return artifact.custom_properties[name].int_value
  return None


def eval_accuracy(evaluation_uri: str) -> Dict[str, float]:
  """Overall eval-split accuracy per model: 'candidate', and 'baseline' if there was one."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  accuracy: Dict[str, float] = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    if metrics.slice_key.single_slice_keys:
      continue  # overall slice only
    for kv in metrics.metric_keys_and_values:
      if kv.key.name == ACCURACY_METRIC and not kv.key.is_diff:
        accuracy[kv.key.model_name or 'candidate'] = kv.value.double_value.value
  return accuracy


def class_accuracy(evaluation_uri: str) -> Dict[str, Dict[int, float]]:
  """Eval accuracy per class (TFMA's `label` slices), per model: {'candidate': {3: 0.9}, ...}."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  result: Dict[str, Dict[int, float]] = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    keys = metrics.slice_key.single_slice_keys
    if len(keys) != 1 or keys[0].column != LABEL_KEY:
      continue
    for kv in metrics.metric_keys_and_values:
      if kv.key.name == ACCURACY_METRIC and not kv.key.is_diff:
        result.setdefault(kv.key.model_name or 'candidate', {})[keys[0].int64_value] = \
            kv.value.double_value.value
  return result


def accuracy_words(accuracy: Dict[str, float]) -> str:
  """'eval accuracy 0.8550 (baseline 0.8400)', or '' when nothing was measured."""
  if 'candidate' not in accuracy:
    return ''
  words = f'eval accuracy {accuracy["candidate"]:.4f}'
  if 'baseline' in accuracy:
    words += f' (baseline {accuracy["baseline"]:.4f})'
  return words + '. '


def slice_words(slice_key, class_names: Sequence[str] = ()) -> str:
  """'overall', or 'class 3 (cat)' for TFMA's label slice."""
  words = []
  for key in slice_key.single_slice_keys:
    value = key.int64_value if key.HasField('int64_value') else (
        key.bytes_value.decode() if key.HasField('bytes_value') else key.float_value)
    if key.column == LABEL_KEY and isinstance(value, int):
      name = class_names[value] if 0 <= value < len(class_names) else '?'
      words.append(f'class {value} ({name})')
    else:
      words.append(f'{key.column}={value}')
  return ', '.join(words) or 'overall'


def failure_words(failure) -> str:
  """A TFMA ValidationFailure as 'sparse_categorical_accuracy change vs baseline -1.0000
  (allowed -0.3000)' or '... 0.4200 (floor 0.8000)'."""
  name = failure.metric_key.name
  value = failure.metric_value.double_value.value
  threshold = failure.metric_threshold
  if failure.metric_key.is_diff:
    words = (f'{name} change vs baseline {value:+.4f} (allowed '
             f'{threshold.change_threshold.absolute.value:+.4f})')
  else:
    words = f'{name} {value:.4f} (floor {threshold.value_threshold.lower_bound.value:.4f})'
  return f'{words}: {failure.message}' if failure.message else words


def gate_reason(evaluation_uri: str, class_names: Sequence[str] = ()) -> str:
  """Plain words for the Evaluator's decision, from TFMA's metrics and validation result."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  try:
    measured = accuracy_words(eval_accuracy(evaluation_uri))
  except Exception:  # pylint: disable=broad-except  # no metrics: the decision still reads
    measured = ''
  try:
    result = tfma.load_validation_result(evaluation_uri)
  except Exception as e:  # pylint: disable=broad-except
    return f'{measured}(no validation result: {e})'
  if result.validation_ok:
    return f'{measured}Every threshold passed.'
  reasons = []
  for failure in result.metric_validations_per_slice:
    for f in failure.failures:
      reasons.append(f'{slice_words(failure.slice_key, class_names)} {failure_words(f)}')
  return f'{measured}Failed: ' + '; '.join(reasons)


def _read_json(path: str) -> Optional[dict]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _last_search(config: PipelineConfig) -> Optional[dict]:
  """The Tuner's last_search.json: which search its last run used, why, what it trained."""
  from tuning.tuner import LAST_SEARCH_FILE  # pylint: disable=g-import-not-at-top
  return _read_json(os.path.join(absolute(config.tuner_dir), LAST_SEARCH_FILE))


def _trainer_json(store, trainer: ComponentRun, name: str) -> Optional[dict]:
  """A JSON file that the Trainer wrote into its model_run directory, else None."""
  for run_dir in artifacts_by_key(store, trainer.execution.id).get('model_run', []):
    found = _read_json(os.path.join(run_dir.uri, name))
    if found:
      return found
  return None


def path_lines(store, runs: Sequence[ComponentRun], config: PipelineConfig) -> List[str]:
  """Which way this run went: the span ingested, the window, the search, the start."""
  # pylint: disable=g-import-not-at-top  # TensorFlow-heavy; loaded by then anyway
  from components.warm_start import PLAN_FILE as WARM_START_FILE
  lines = []
  by_id = {run.node_id: run for run in runs}
  gen = by_id.get('ImageExampleGen')
  trainer = by_id.get('Trainer')
  if gen and gen.state in ('done', 'cached'):
    spans = [_int_property(a, 'span') for a in _output_artifacts(store, gen.execution.id)]
    if any(spans):
      lines.append(f'Span: ingested span {spans[0]}' +
                   (' (cached)' if gen.state == 'cached' else ''))
  gate = by_id.get('DataGate')
  if gate and gate.state in ('done', 'cached'):
    for artifact in _output_artifacts(store, gate.execution.id):
      if 'data_gate' in artifact.custom_properties:
        lines.append(f"Data gate: {artifact.custom_properties['data_gate'].string_value}")
  if trainer and trainer.state in ('done', 'cached'):
    examples = artifacts_by_key(store, trainer.execution.id, inputs=True).get('examples', [])
    spans = sorted(s for s in (_int_property(a, 'span') for a in examples) if s)
    if spans:
      lines.append(f'Training window: spans {spans}')
  tuner = by_id.get('Tuner')
  if tuner and tuner.state == 'done':
    last = _last_search(config)
    if last:
      lines.append(f"Tuner: {last['reason']}")
  elif tuner and tuner.state == 'cached':
    lines.append('Tuner: cached (same inputs as an earlier run)')
  if trainer and trainer.state in ('done', 'cached'):
    plan = _trainer_json(store, trainer, WARM_START_FILE)
    if plan:
      lines.append(f"Trainer: {plan['reason']}, {plan['epochs']} epochs" +
                   (f"; replay: {plan['replay']}" if plan.get('replay') else ''))
  return lines


@dataclasses.dataclass(frozen=True)
class Compute:
  """The training compute that one component spent in this run (models/flops.py)."""
  tflop: Optional[float]  # None: not recorded
  note: str = ''  # why it is 0 or unknown: 'cached', 'off', 'FAILED', ...


def tflop_words(tflop: float) -> str:
  """'259.6', or two significant digits below 1 TFLOP (a smoke run's '0.0031')."""
  return f'{tflop:.1f}' if tflop >= 1 or tflop == 0 else f'{tflop:.2g}'


def compute_words(tuner: Compute, trainer: Compute, budget: Optional[float]) -> str:
  """'Compute: Tuner 61.2 TFLOP, Trainer 198.4 TFLOP, total 259.6 TFLOP (budget 400)'."""
  parts = []
  for name, spent in (('Tuner', tuner), ('Trainer', trainer)):
    words = f'{name} not recorded' if spent.tflop is None else \
        f'{name} {tflop_words(spent.tflop)} TFLOP'
    parts.append(words + (f' ({spent.note})' if spent.note else ''))
  total = sum(spent.tflop or 0.0 for spent in (tuner, trainer))
  unknown = tuner.tflop is None or trainer.tflop is None
  line = (f'Compute: {", ".join(parts)}, total {"at least " if unknown else ""}'
          f'{tflop_words(total)} TFLOP')
  if budget is not None:
    line += f' (budget {budget:g}{", OVER" if total > budget else ""})'
  return line


def component_compute(run: Optional[ComponentRun], record: Optional[dict],
                      absent: str = 'did not run') -> Compute:
  """What `run` spent, from the models/flops.py `record` it wrote (None: none found).

  A cached component trained nothing in this run; one that did not finish
  left no record.
  """
  if run is None:
    return Compute(0.0, absent)
  if run.state == 'cached':
    return Compute(0.0, 'cached')
  if run.state != 'done':
    return Compute(None, run.state)
  if not record:
    return Compute(None, 'no record')
  return Compute(record['training_tflop'], '' if record['images'] else 'nothing trained')


def compute_line(store, runs: Sequence[ComponentRun], config: PipelineConfig) -> str:
  """The compute of this run's Tuner and Trainer, against the config's budget."""
  from components.trainer import COMPUTE_FILE  # pylint: disable=g-import-not-at-top
  by_id = {run.node_id: run for run in runs}
  tuner, trainer = by_id.get('Tuner'), by_id.get('Trainer')
  last = _last_search(config) if tuner and tuner.state == 'done' else None
  return compute_words(
      component_compute(tuner, (last or {}).get('compute'),
                        'did not run' if config.tune.enabled else 'off'),
      component_compute(trainer, _trainer_json(store, trainer, COMPUTE_FILE)
                        if trainer and trainer.state == 'done' else None),
      config.compute_budget_tflop)


def class_names_of_run(store, runs: Sequence[ComponentRun]) -> List[str]:
  for run in runs:
    if run.node_id == 'ImageExampleGen' and run.state in ('done', 'cached'):
      for artifact in _output_artifacts(store, run.execution.id):
        names = _read_json(os.path.join(artifact.uri, CLASS_NAMES_FILE))
        if names:
          return names
  return []


SKIPPED_NAMED = 10  # skipped files named in the summary (all are in skipped.txt)


def prediction_lines(result: metadata_store_pb2.Artifact) -> List[str]:
  """What the BulkInferrer scored, from its InferenceResult (components/bulk_inference/)."""
  from components.bulk_inference import rows  # pylint: disable=g-import-not-at-top
  props = result.custom_properties
  if 'scored' not in props:
    return []
  skipped_path = os.path.join(result.uri, rows.SKIPPED_FILE)
  if not props['scored_by'].string_value:
    lines = ['Predictions: no blessed model yet: nothing scored']
  else:
    lines = [f"Predictions: {props['scored'].int_value} images scored by "
             f"{props['scored_by'].string_value}: {props['predictions'].string_value}"]
  skipped = []
  if os.path.exists(skipped_path):
    with open(skipped_path) as f:
      skipped = [line.rstrip('\n').split('\t', 1) for line in f if line.strip()]
  if skipped:
    lines.append(f'Predictions: {len(skipped)} files skipped (all in {skipped_path}):')
    lines.extend(f'  {parts[0]}: {parts[-1]}' for parts in skipped[:SKIPPED_NAMED])
    if len(skipped) > SKIPPED_NAMED:
      lines.append(f'  ... and {len(skipped) - SKIPPED_NAMED} more')
  return lines


def summarize(config: PipelineConfig, since: float) -> Summary:
  runs = component_runs(config.metadata_path, config.pipeline_name, since)
  blessed, reason, pushed_to = None, '', None
  serving_ok, serving_words, paths, compute, predictions = None, '', [], '', []
  if runs:
    store = open_store(config.metadata_path)
    paths = path_lines(store, runs, config)
    compute = compute_line(store, runs, config)
    class_names = class_names_of_run(store, runs)
    for run in runs:
      if run.state not in ('done', 'cached'):
        continue
      outputs = _output_artifacts(store, run.execution.id)
      if run.node_id == 'Evaluator':
        for artifact in outputs:
          flag = _int_property(artifact, 'blessed')
          if flag is not None:
            blessed = bool(flag)
          elif artifact.uri and artifact.type_id and 'evaluation' in artifact.uri.lower():
            reason = gate_reason(artifact.uri, class_names)
      if run.node_id == 'ServingCheck':
        for artifact in outputs:
          flag = _int_property(artifact, 'blessed')
          if flag is not None:
            serving_ok = bool(flag)
            serving_words = artifact.custom_properties['serving_check'].string_value
      if run.node_id == 'BulkInferrer':
        for artifact in outputs:
          predictions.extend(prediction_lines(artifact))
      if run.node_id == 'Pusher':
        for artifact in outputs:
          if _int_property(artifact, 'pushed'):
            pushed_to = artifact.custom_properties['pushed_destination'].string_value
  return Summary(runs, blessed, reason, pushed_to, time.time() - since,
                 serving_check=serving_ok, serving_check_words=serving_words, paths=paths,
                 compute=compute, pipeline_root=config.pipeline_root,
                 predictions=predictions)
