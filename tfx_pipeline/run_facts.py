"""The facts of one pipeline run, read from MLMD and its artifacts: what every view shows.

Why: report.html (tfx_pipeline/report.py) and the model card of a pushed
version (tfx_pipeline/model_card.py) tell the same run in two ways. Both are
thin views over the `RunFacts` gathered here, so a number cannot differ
between them, and a new fact is read in one place.

    gather(config, since) -> RunFacts   reads MLMD and the artifact files

Every field holds its data or a `Missing(reason)`: a component that failed,
was left out (--no-tune) or never ran yields a sentence, not a crash. The
small numeric helpers (per-class accuracy, the best trial) work on plain data
and are shared by the views.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from tfx_pipeline import run_summary
from tfx_pipeline.config import PipelineConfig

HISTORY_FILE = 'history.json'  # components/trainer.py writes it into model_run
TUNER_RESULTS_FILE = 'tuner_results.json'  # TFX Tuner, in tuner_results
BEST_HPARAMS_FILE = 'best_hyperparameters.txt'  # TFX Tuner, in best_hyperparameters
CONFUSION_PLOT = 'multi_class_confusion_matrix_plot'


@dataclasses.dataclass(frozen=True)
class Missing:
  """Why a section has no data (shown in its place)."""
  reason: str


@dataclasses.dataclass(frozen=True)
class TimelineRow:
  node_id: str
  state: str  # done | cached | FAILED | running | canceled
  start: float  # seconds after the first component started
  seconds: float


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """What the Evaluator measured and decided."""
  accuracy: Dict[str, float]  # 'candidate' (and 'baseline' when there was one)
  confusion: Optional[List[List[float]]]  # [actual][predicted] example counts
  validation_ok: Optional[bool]  # None: no validation result
  failures: List[str]  # threshold messages when not ok
  blessed: Optional[bool]
  baseline_uri: Optional[str]  # the blessed model compared against
  # Per class (TFMA's label slices): {'candidate'|'baseline': {label: accuracy}}
  class_accuracy: Dict[str, Dict[int, float]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SpanRow:
  """One Examples artifact of the training window."""
  span: int  # 0: a plain tree or tfds
  train_images: Optional[int]  # written per split, from image_counts.json
  eval_images: Optional[int]
  ingested_now: bool  # written by this run's ImageExampleGen (else resolved from MLMD)


@dataclasses.dataclass(frozen=True)
class Spans:
  rows: List[SpanRow]
  paths: List[str]  # the summary's lines: span ingested, window, tuner, warm start


@dataclasses.dataclass(frozen=True)
class Tuning:
  trials: List[Dict[str, Any]]  # tuner_results.json rows: trial_id, score, hp values
  best: Dict[str, Any]  # best_hyperparameters values


@dataclasses.dataclass(frozen=True)
class Training:
  """How the model was trained: its hyperparameters and where they came from."""
  hparams: Dict[str, Any]  # the Trainer's hyperparameters.json
  source: str  # 'the Tuner's best trial (3)', 'the file x.json', 'the search space's defaults'
  warm_start: str  # the Trainer's warm-start plan in words ('' when none was recorded)
  state: str  # the Trainer's state in this run: done | cached
  seconds: Optional[float]  # its wall time in this run (None: cached, trained earlier)


@dataclasses.dataclass(frozen=True)
class RunFacts:
  """Everything the views show; each field is its data or a Missing."""
  title: str
  started: float  # epoch seconds
  pipeline_root: str
  preset: str
  gate: Mapping[str, float]  # min_accuracy, max_regression
  timeline: Union[List[TimelineRow], Missing]
  class_names: List[str]
  counts: Union[Dict[str, Any], Missing]  # ImageExampleGen's image_counts.json
  tuning: Union[Tuning, Missing]
  history: Union[List[Dict[str, float]], Missing]  # Trainer's history.json
  evaluation: Union[Evaluation, Missing]
  pushed_to: Union[str, Missing]
  spans: Union[Spans, Missing] = Missing('No training window recorded.')
  compute: str = ''  # run_summary.compute_line: Tuner and Trainer TFLOP, the budget
  source: str = ''  # where the images came from (DataConfig.source_name)
  model: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # variant, image_size
  training: Union[Training, Missing] = Missing('No training record.')


# ----------------------------------------------------------------------------
# Numbers from plain data.

def per_class_accuracy(matrix: Sequence[Sequence[float]]) -> List[Optional[float]]:
  """Correct / total per true class (None for a class absent from the eval split)."""
  return [row[i] / sum(row) if sum(row) else None for i, row in enumerate(matrix)]


def confusion_from_entries(entries: Sequence[Tuple[int, int, float]],
                           num_classes: int) -> List[List[float]]:
  """(actual, predicted, weight) triples -> a dense matrix; predicted -1 ('none') dropped."""
  matrix = [[0.0] * num_classes for _ in range(num_classes)]
  for actual, predicted, weight in entries:
    if 0 <= actual < num_classes and 0 <= predicted < num_classes:
      matrix[actual][predicted] += weight
  return matrix


def best_trial_id(trials: Sequence[Mapping[str, Any]], best: Mapping[str, Any]) -> Optional[str]:
  """The trial whose values are the best hyperparameters; else the top score."""
  for trial in trials:
    if best and all(trial.get(k) == v for k, v in best.items()):
      return trial['trial_id']
  scored = [t for t in trials if t.get('score') is not None]
  return max(scored, key=lambda t: t['score'])['trial_id'] if scored else None


# ----------------------------------------------------------------------------
# Reading a run: MLMD and artifact files -> RunFacts.

def _read_json(path: str) -> Any:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _exists(path: str) -> bool:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile.exists(path)


class _Run:
  """This run's executions by component, with their artifacts by event key."""

  def __init__(self, config: PipelineConfig, since: float):
    self.config = config
    self.runs = {r.node_id: r for r in run_summary.component_runs(
        config.metadata_path, config.pipeline_name, since)}
    self.store = run_summary.open_store(config.metadata_path) if self.runs else None

  def artifact(self, node_id: str, key: str, inputs: bool = False):
    """The first artifact that `node_id` read (inputs) or wrote under `key`, else None."""
    run = self.runs.get(node_id)
    if run is None:
      return None
    by_key = run_summary.artifacts_by_key(self.store, run.execution.id, inputs=inputs)
    found = by_key.get(key) or []
    return found[0] if found else None

  def why_missing(self, node_id: str, what: str) -> Missing:
    """A sentence for a section whose component left nothing to show."""
    run = self.runs.get(node_id)
    if run is None:
      if node_id == 'Tuner' and not self.config.tune.enabled:
        return Missing(f'No {what}: the Tuner is switched off (--no-tune); the Trainer used '
                       'the default or --hparams-file hyperparameters.')
      return Missing(f'No {what}: the {node_id} did not run in this run '
                     '(the pipeline stopped before it).')
    if run.state == 'FAILED':
      return Missing(f'No {what}: the {node_id} FAILED in this run (see the log).')
    if run.state not in ('done', 'cached'):
      return Missing(f'No {what}: the {node_id} did not finish ({run.state}).')
    return Missing(f'No {what}: the {node_id} ({run.state}) recorded no such output.')

  def file_in(self, node_id: str, key: str, name: str, what: str) -> Union[str, Missing]:
    """Path of `name` inside the output artifact `key` of `node_id`, or why not."""
    artifact = self.artifact(node_id, key)
    if artifact is None:
      return self.why_missing(node_id, what)
    path = os.path.join(artifact.uri, name)
    if not _exists(path):
      return Missing(f'No {what}: {path} does not exist.')
    return path


def load_timeline(runs: Sequence[run_summary.ComponentRun]) -> Union[List[TimelineRow], Missing]:
  if not runs:
    return Missing('MLMD recorded no component execution for this run.')
  origin = min(r.execution.create_time_since_epoch for r in runs) / 1e3
  return [TimelineRow(r.node_id, r.state, r.execution.create_time_since_epoch / 1e3 - origin,
                      r.seconds) for r in runs]


def load_tuning(run: _Run) -> Union[Tuning, Missing]:
  results = run.file_in('Tuner', 'tuner_results', TUNER_RESULTS_FILE, 'tuner trials')
  if isinstance(results, Missing):
    return results
  best_path = run.file_in('Tuner', 'best_hyperparameters', BEST_HPARAMS_FILE,
                          'best hyperparameters')
  best = {} if isinstance(best_path, Missing) else _read_json(best_path).get('values', {})
  return Tuning(_read_json(results), best)


def load_spans(run: _Run) -> Union[Spans, Missing]:
  """The Trainer's input Examples (the window), their spans and counts."""
  from components import features  # pylint: disable=g-import-not-at-top
  trainer = run.runs.get('Trainer')
  if trainer is None or trainer.state not in ('done', 'cached'):
    return run.why_missing('Trainer', 'training window')
  window = run_summary.artifacts_by_key(run.store, trainer.execution.id,
                                        inputs=True).get('examples', [])
  ingested = run.artifact('ImageExampleGen', 'examples')
  rows = []
  for artifact in window:
    path = os.path.join(artifact.uri, features.COUNTS_FILE)
    splits = _read_json(path).get('splits', {}) if _exists(path) else {}
    span = artifact.custom_properties['span'].int_value \
        if 'span' in artifact.custom_properties else 0
    rows.append(SpanRow(span, splits.get('train', {}).get('written'),
                        splits.get('eval', {}).get('written'),
                        ingested is not None and ingested.id == artifact.id))
  return Spans(sorted(rows, key=lambda r: r.span),
               run_summary.path_lines(run.store, list(run.runs.values()), run.config))


def load_evaluation(run: _Run, num_classes: int,
                    class_names: Sequence[str] = ()) -> Union[Evaluation, Missing]:
  """Accuracy per model, confusion matrix and decision from the TFMA output."""
  artifact = run.artifact('Evaluator', 'evaluation')
  if artifact is None:
    return run.why_missing('Evaluator', 'evaluation')
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  accuracy = run_summary.eval_accuracy(artifact.uri)
  confusion = None
  for plots in tfma.load_plots(artifact.uri):
    if plots.slice_key.single_slice_keys:
      continue
    for kv in plots.plot_keys_and_values:
      if kv.key.name != CONFUSION_PLOT or kv.key.model_name not in ('', 'candidate'):
        continue
      matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
      if matrices:
        entries = [(e.actual_class_id, e.predicted_class_id, e.num_weighted_examples)
                   for e in matrices[0].entries]
        n = num_classes or 1 + max([max(a, p) for a, p, _ in entries] + [0])
        confusion = confusion_from_entries(entries, n)
  validation_ok, failures = None, []
  try:
    validation = tfma.load_validation_result(artifact.uri)
    validation_ok = validation.validation_ok
    for per_slice in validation.metric_validations_per_slice:
      for failure in per_slice.failures:
        failures.append(f'{run_summary.slice_words(per_slice.slice_key, class_names)} '
                        f'{run_summary.failure_words(failure)}')
  except Exception:  # pylint: disable=broad-except  # an older run without validations
    pass
  blessing = run.artifact('Evaluator', 'blessing')
  blessed = None
  if blessing is not None and 'blessed' in blessing.custom_properties:
    blessed = bool(blessing.custom_properties['blessed'].int_value)
  baseline = run.artifact('Evaluator', 'baseline_model', inputs=True)
  return Evaluation(accuracy, confusion, validation_ok, failures, blessed,
                    baseline.uri if baseline is not None else None,
                    run_summary.class_accuracy(artifact.uri))


def load_push(run: _Run) -> Union[str, Missing]:
  artifact = run.artifact('Pusher', 'pushed_model')
  if artifact is None:
    return run.why_missing('Pusher', 'push')
  props = artifact.custom_properties
  if 'pushed' in props and not props['pushed'].int_value:
    check = run.artifact('ServingCheck', 'blessing')
    if check is not None and not check.custom_properties['blessed'].int_value:
      return Missing('Nothing was pushed: the model failed the serving check (TF Serving\'s '
                     'loader path): ' + check.custom_properties['serving_check'].string_value)
    return Missing('Nothing was pushed: the Evaluator did not bless the model.')
  if 'pushed_destination' in props:
    return props['pushed_destination'].string_value
  return Missing('The Pusher recorded no destination.')


def hparams_source(tuned: bool, tuning: Union[Tuning, Missing],
                   hparams_file: Optional[str]) -> str:
  """Where the Trainer's hyperparameters came from (tuning/search_space.resolve's order)."""
  if tuned:
    trial = None if isinstance(tuning, Missing) else best_trial_id(tuning.trials, tuning.best)
    return 'the Tuner\'s best trial' + (f' (trial {trial})' if trial is not None else '')
  if hparams_file:
    return f'the file {hparams_file} (--hparams-file)'
  return 'the search space\'s defaults'


def load_training(run: _Run, tuning: Union[Tuning, Missing]) -> Union[Training, Missing]:
  """The Trainer's hyperparameters, their source, its warm start and its wall time."""
  from components import trainer as trainer_module  # pylint: disable=g-import-not-at-top
  from components import warm_start  # pylint: disable=g-import-not-at-top
  path = run.file_in('Trainer', 'model_run', trainer_module.HPARAMS_FILE, 'hyperparameters')
  if isinstance(path, Missing):
    return path
  trainer = run.runs['Trainer']
  tuned = bool(run_summary.artifacts_by_key(run.store, trainer.execution.id,
                                            inputs=True).get('hyperparameters'))
  plan_path = os.path.join(os.path.dirname(path), warm_start.PLAN_FILE)
  plan = _read_json(plan_path) if _exists(plan_path) else {}
  return Training(_read_json(path), hparams_source(tuned, tuning, run.config.tune.hparams_file),
                  plan.get('reason', ''), trainer.state,
                  trainer.seconds if trainer.state == 'done' else None)


def gather(config: PipelineConfig, since: float) -> RunFacts:
  """Reads this run's MLMD records and artifact files into RunFacts."""
  from components import features  # pylint: disable=g-import-not-at-top
  run = _Run(config, since)
  examples = run.artifact('ImageExampleGen', 'examples')
  class_names: List[str] = []
  counts: Union[Dict[str, Any], Missing] = run.why_missing('ImageExampleGen', 'data counts')
  if examples is not None:
    names_path = os.path.join(examples.uri, features.CLASS_NAMES_FILE)
    class_names = _read_json(names_path) if _exists(names_path) else []
    counts_path = os.path.join(examples.uri, features.COUNTS_FILE)
    counts = _read_json(counts_path) if _exists(counts_path) else Missing(
        f'No data counts: {counts_path} does not exist.')
  history_path = run.file_in('Trainer', 'model_run', HISTORY_FILE, 'training history')
  tuning = load_tuning(run)
  return RunFacts(
      title=f'{config.pipeline_name}: run report',
      started=since,
      pipeline_root=config.pipeline_root,
      preset=config.preset,
      gate=dataclasses.asdict(config.gate),
      timeline=load_timeline(list(run.runs.values())),
      class_names=class_names,
      counts=counts,
      tuning=tuning,
      history=history_path if isinstance(history_path, Missing) else _read_json(history_path),
      evaluation=load_evaluation(run, len(class_names), class_names),
      pushed_to=load_push(run),
      spans=load_spans(run),
      compute=run_summary.compute_line(run.store, list(run.runs.values()), config)
      if run.store else '',
      source=config.data.source_name,
      model=dataclasses.asdict(config.model),
      training=load_training(run, tuning))
