"""report.html: one self-contained page about one pipeline run, read from MLMD and artifacts.

Why: the console summary says what ran and whether a model was pushed; this
page says why -- how long each component took, what the data looked like,
how the search and the training went, where the model errs, and how the
Evaluator decided. It is one HTML file with its plots embedded as base64 PNGs,
so it can be mailed, attached to a ticket or opened from a bucket.

    gather(config, since)  -> ReportInputs   reads MLMD and the artifact files
    build_report(inputs)   -> str            pure: data -> HTML
    write_report(config, since) -> path      both, into <pipeline_root>/report.html

Every section takes either its data or a `Missing(reason)`; a component that
failed, was left out (--no-tune) or never ran yields a sentence, not a crash.
Plots use matplotlib's Agg canvas directly (no pyplot, no display).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import io
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from tfx_pipeline import run_summary
from tfx_pipeline.config import PipelineConfig

REPORT_FILE = 'report.html'
HISTORY_FILE = 'history.json'  # components/trainer.py writes it into model_run
TUNER_RESULTS_FILE = 'tuner_results.json'  # TFX Tuner, in tuner_results
BEST_HPARAMS_FILE = 'best_hyperparameters.txt'  # TFX Tuner, in best_hyperparameters
CONFUSION_PLOT = 'multi_class_confusion_matrix_plot'
_STATE_COLORS = {'done': '#4c9a5b', 'cached': '#9aa5b1', 'FAILED': '#c0392b',
                 'running': '#e6a23c', 'canceled': '#e6a23c'}


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
class ReportInputs:
  """Everything the page shows; each field is its data or a Missing."""
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


# ----------------------------------------------------------------------------
# Plots: plain data -> PNG bytes.

def _figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(fig)
  return fig


def _png(fig) -> bytes:
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', bbox_inches='tight')
  return buffer.getvalue()


def timeline_png(rows: Sequence[TimelineRow]) -> bytes:
  """Horizontal bars: when each component ran and for how long, colored by state."""
  fig = _figure(9, 0.4 * len(rows) + 1.2)
  ax = fig.add_subplot()
  end = max([r.start + r.seconds for r in rows] + [1.0])
  labels = [r.node_id for r in rows]
  for i, r in enumerate(rows):
    width = max(r.seconds, end / 400)  # a cached 0 s component stays visible
    ax.barh(i, width, left=r.start, color=_STATE_COLORS.get(r.state, '#888888'))
    ax.text(r.start + width + end / 100, i, f'{run_summary.format_seconds(r.seconds)} {r.state}',
            va='center', fontsize=8)
  ax.set_yticks(range(len(rows)), labels)
  ax.invert_yaxis()
  ax.set_xlim(0, end * 1.18)
  ax.set_xlabel('seconds since the first component started')
  ax.grid(axis='x', alpha=0.3)
  return _png(fig)


def class_counts_png(counts: Mapping[str, Any], class_names: Sequence[str]) -> bytes:
  """Images written per class, one stacked bar per class (train, eval)."""
  names = list(class_names) or sorted({c for s in counts['splits'].values()
                                       for c in s.get('classes', {})})
  fig = _figure(9, 0.28 * len(names) + 1.2)
  ax = fig.add_subplot()
  left = [0] * len(names)
  for split, color in zip(counts['splits'], ('#4878a8', '#e49444', '#6a9f58', '#b07aa1')):
    classes = counts['splits'][split].get('classes', {})
    values = [classes.get(n, {}).get('written', 0) for n in names]
    ax.barh(range(len(names)), values, left=left, color=color, label=split)
    left = [a + b for a, b in zip(left, values)]
  ax.set_yticks(range(len(names)), names, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel('images written')
  ax.legend(loc='lower right', fontsize=8)
  return _png(fig)


def curves_png(history: Sequence[Mapping[str, float]]) -> bytes:
  """Loss and accuracy per epoch, train against eval (Keras' `val_` keys)."""
  fig = _figure(10, 3.4)
  epochs = [row['epoch'] for row in history]
  for i, metric in enumerate(('loss', 'accuracy')):
    ax = fig.add_subplot(1, 2, i + 1)
    for key, label in ((metric, 'train'), (f'val_{metric}', 'eval')):
      values = [row.get(key) for row in history]
      if any(v is not None for v in values):
        ax.plot(epochs, values, marker='o', label=label)
    ax.set_title(metric)
    ax.set_xlabel('epoch')
    ax.set_xticks(epochs if len(epochs) <= 20 else epochs[::max(1, len(epochs) // 10)])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  return _png(fig)


def trials_png(trials: Sequence[Mapping[str, Any]], best: Optional[str],
               x_key: str = 'learning_rate') -> bytes:
  """Score per trial (ranked, the best in green) and, when tuned, score against `x_key`."""
  ranked = sorted(trials, key=lambda t: -(t.get('score') or 0.0))
  xs = [t for t in trials
        if isinstance(t.get(x_key), (int, float)) and t.get('score') is not None]
  fig = _figure(10, max(2.6, 0.24 * len(ranked) + 1.0))
  ax = fig.add_subplot(1, 2 if xs else 1, 1)
  colors = ['#4c9a5b' if t['trial_id'] == best else '#4878a8' for t in ranked]
  ax.barh(range(len(ranked)), [t.get('score') or 0.0 for t in ranked], color=colors)
  ax.set_yticks(range(len(ranked)), [str(t['trial_id']) for t in ranked], fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel('score (validation accuracy, tuning subset)')
  ax.set_ylabel('trial')
  ax.grid(axis='x', alpha=0.3)
  if xs:
    ax = fig.add_subplot(1, 2, 2)
    ax.scatter([t[x_key] for t in xs], [t['score'] for t in xs],
               c=['#4c9a5b' if t['trial_id'] == best else '#4878a8' for t in xs])
    ax.set_xscale('log')
    ax.set_xlabel(x_key)
    ax.set_ylabel('score')
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return _png(fig)


def confusion_png(matrix: Sequence[Sequence[float]], class_names: Sequence[str]) -> bytes:
  """Rows: true class; columns: predicted; color is the row share, text the count."""
  n = len(matrix)
  size = min(11, 2.5 + 0.55 * n)
  fig = _figure(size, size * 0.85)
  ax = fig.add_subplot()
  shares = [[v / max(sum(row), 1e-12) for v in row] for row in matrix]
  image = ax.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  if n <= 20:
    for i in range(n):
      for j in range(n):
        if matrix[i][j]:
          ax.text(j, i, f'{matrix[i][j]:g}', ha='center', va='center', fontsize=8,
                  color='white' if shares[i][j] > 0.5 else 'black')
  ax.set_xticks(range(n), class_names, rotation=45, ha='right', fontsize=8)
  ax.set_yticks(range(n), class_names, fontsize=8)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='share of the true class')
  return _png(fig)


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
# HTML.

def _e(value: Any) -> str:
  return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
  data = base64.b64encode(png).decode('ascii')
  return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _missing(value: Missing) -> str:
  return f'<p class="missing">{_e(value.reason)}</p>'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]],
           classes: Sequence[str] = ()) -> str:
  head = ''.join(f'<th>{_e(h)}</th>' for h in header)
  body = []
  for i, row in enumerate(rows):
    cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ''
    body.append(f'<tr{cls}>' + ''.join(f'<td>{_e(c)}</td>' for c in row) + '</tr>')
  return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f'{value:.4g}'
  return '' if value is None else str(value)


def timeline_section(timeline: Union[List[TimelineRow], Missing], compute: str = '') -> str:
  if isinstance(timeline, Missing):
    return _missing(timeline)
  total = max([r.start + r.seconds for r in timeline] + [0.0])
  rows = [(r.node_id, r.state, run_summary.format_seconds(r.seconds),
           run_summary.format_seconds(r.start)) for r in timeline]
  noun = 'component' if len(timeline) == 1 else 'components'
  compute = f'<p>{_e(compute)}.</p>' if compute else ''
  return (f'<p>{len(timeline)} {noun}, {run_summary.format_seconds(total)} from the first '
          f'start to the last finish.</p>{compute}'
          + _img(timeline_png(timeline), 'component timeline')
          + _table(('component', 'state', 'wall time', 'started at +'), rows))


def data_section(counts: Union[Dict[str, Any], Missing], class_names: Sequence[str]) -> str:
  if isinstance(counts, Missing):
    return _missing(counts)
  splits = list(counts['splits'])
  header = ['class'] + [f'{s} {w}' for s in splits for w in ('read', 'written', 'skipped')]
  names = list(class_names) or sorted({c for s in splits
                                       for c in counts['splits'][s].get('classes', {})})
  rows = []
  for name in names:
    row = [name]
    for s in splits:
      c = counts['splits'][s].get('classes', {}).get(name, {})
      row += [c.get('read', 0), c.get('written', 0), c.get('skipped', 0)]
    rows.append(row)
  total = ['total']
  for s in splits:
    c = counts['splits'][s]
    total += [c.get('read', 0), c.get('written', 0), c.get('skipped', 0)]
  parts = [f'<p>Eval split from: {_e(counts.get("eval_from", "?"))}.</p>',
           _img(class_counts_png(counts, names), 'images per class'),
           _table(header, rows + [total], [''] * len(rows) + ['total'])]
  skipped = counts.get('skipped_files') or []
  if skipped:
    parts.append(f'<h3>Skipped: {len(skipped)} undecodable or oversized image(s)</h3>')
    parts.append(_table(('split', 'file', 'reason'),
                        [(line.split('\t') + ['', '', ''])[:3] for line in skipped]))
  else:
    parts.append('<p>No image was skipped: every file decoded, within the pixel limit.</p>')
  ignored = counts.get('ignored') or []
  if ignored:
    parts.append(f'<h3>Ignored by the folder scan: {len(ignored)}</h3>')
    parts.append(_table(('path', 'reason'), [(i['path'], i['reason']) for i in ignored]))
  if counts.get('unused_splits'):
    parts.append(f'<p>Unused source splits: {_e(", ".join(counts["unused_splits"]))}.</p>')
  return ''.join(parts)


def tuning_section(tuning: Union[Tuning, Missing]) -> str:
  if isinstance(tuning, Missing):
    return _missing(tuning)
  if not tuning.trials:
    return _missing(Missing('The Tuner finished no trial.'))
  # Hyperband's bookkeeping columns, except the epochs a trial trained for.
  names = [k for k in tuning.trials[0] if k not in ('trial_id', 'score')
           and (not k.startswith('tuner/') or k == 'tuner/epochs')]
  best = best_trial_id(tuning.trials, tuning.best)
  trials = sorted(tuning.trials, key=lambda t: -(t.get('score') or float('-inf')))
  rows = [(('best: ' if t['trial_id'] == best else '') + str(t['trial_id']),
           _fmt(t.get('score')), *[_fmt(t.get(n)) for n in names]) for t in trials]
  marks = ['best' if t['trial_id'] == best else '' for t in trials]
  return (f'<p>{len(trials)} completed trials, ranked by score (validation accuracy on the '
          'tuning subset). The best one, which the Trainer used, is highlighted.</p>'
          + _img(trials_png(trials, best), 'score per trial, and against the learning rate')
          + _table(['trial', 'score'] + [n.replace('tuner/', '') for n in names], rows, marks))


def training_section(history: Union[List[Dict[str, float]], Missing]) -> str:
  if isinstance(history, Missing):
    return _missing(history)
  if not history:
    return _missing(Missing('history.json holds no epoch.'))
  keys = [k for k in history[0] if k != 'epoch']
  rows = [[row['epoch']] + [_fmt(row.get(k)) for k in keys] for row in history]
  return _img(curves_png(history), 'training curves') + _table(['epoch'] + keys, rows)


def evaluation_section(evaluation: Union[Evaluation, Missing], class_names: Sequence[str],
                       gate: Mapping[str, float]) -> str:
  if isinstance(evaluation, Missing):
    return _missing(evaluation)
  parts = []
  if evaluation.blessed is None:
    verdict = 'no blessing recorded'
  else:
    verdict = 'BLESSED' if evaluation.blessed else 'NOT blessed'
  parts.append(f'<p class="verdict {"ok" if evaluation.blessed else "bad"}">Decision: '
               f'{_e(verdict)}</p>')
  candidate = evaluation.accuracy.get('candidate')
  baseline = evaluation.accuracy.get('baseline')
  rows = [('candidate (this run)', _fmt(candidate))]
  if baseline is not None:
    rows.append(('baseline (latest blessed)', _fmt(baseline)))
    if candidate is not None:
      rows.append(('change', f'{candidate - baseline:+.4f}'))
  parts.append(_table(('model', 'eval accuracy'), rows))
  regression = gate.get('max_regression', 0)
  per_class = gate.get('max_class_regression', 1.0)
  parts.append(f'<p>Rules: eval accuracy at least {gate.get("min_accuracy", 0):.2f}, and '
               + (f'at most {regression:.4f} below' if regression else 'not below')
               + ' the latest blessed model\'s'
               + (f'; on every class, at most {per_class:.3f} below the baseline\'s'
                  if per_class < 1.0 else '')
               + (f' and at least {gate["min_class_accuracy"]:.3f}'
                  if gate.get('min_class_accuracy') else '') + '.</p>')
  if baseline is None:
    parts.append('<p>No baseline: no model had been blessed before, so only the floor '
                 'applied.</p>')
  elif evaluation.baseline_uri:
    parts.append(f'<p>Baseline model: <code>{_e(evaluation.baseline_uri)}</code></p>')
  if evaluation.validation_ok is False:
    parts.append('<ul>' + ''.join(f'<li>{_e(f)}</li>' for f in evaluation.failures) + '</ul>')
  elif evaluation.validation_ok:
    parts.append('<p>Every threshold passed.</p>')
  if evaluation.confusion:
    names = list(class_names) if len(class_names) == len(evaluation.confusion) else \
        [str(i) for i in range(len(evaluation.confusion))]
    parts.append('<h3>Confusion matrix (eval split)</h3>')
    parts.append(_img(confusion_png(evaluation.confusion, names), 'confusion matrix'))
    accuracy = per_class_accuracy(evaluation.confusion)
    by_class = evaluation.class_accuracy
    if 'baseline' in by_class:  # per class against the baseline (TFMA's label slices)
      rows = []
      for i, (n, row) in enumerate(zip(names, evaluation.confusion)):
        c, b = by_class.get('candidate', {}).get(i), by_class['baseline'].get(i)
        rows.append((n, f'{sum(row):g}', '-' if c is None else f'{c:.3f}',
                     '-' if b is None else f'{b:.3f}',
                     '-' if c is None or b is None else f'{c - b:+.3f}'))
      parts.append(_table(('class', 'eval images', 'candidate', 'baseline', 'change'), rows))
    else:
      parts.append(_table(('class', 'eval images', 'accuracy'),
                          [(n, f'{sum(row):g}', '-' if a is None else f'{a:.3f}')
                           for n, row, a in zip(names, evaluation.confusion, accuracy)]))
  else:
    parts.append(_missing(Missing('No confusion matrix in the evaluation output.')))
  return ''.join(parts)


def spans_section(spans: Union[Spans, Missing]) -> str:
  if isinstance(spans, Missing):
    return _missing(spans)
  rows = [('plain tree' if r.span == 0 else f'span {r.span}', _fmt(r.train_images),
           _fmt(r.eval_images), 'this run' if r.ingested_now else 'earlier run')
          for r in spans.rows]
  parts = [_table(('Examples in the training window', 'train images', 'eval images',
                   'ingested by'), rows)]
  if spans.paths:
    parts.append('<ul>' + ''.join(f'<li>{_e(p)}</li>' for p in spans.paths) + '</ul>')
  return ''.join(parts)


def push_section(pushed_to: Union[str, Missing]) -> str:
  if isinstance(pushed_to, Missing):
    return _missing(pushed_to)
  return (f'<p>Pushed to <code>{_e(pushed_to)}</code>. TensorFlow Serving loads the '
          'numbered directory as one version.</p>')


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1000px;
color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#555}.meta code{font-size:.95em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
tr.best td{background:#e5f3e5;font-weight:600}tr.total td{font-weight:600;background:#fafafa}
img{max-width:100%;display:block;margin:.6em 0}
.missing{color:#8a6d3b;background:#fcf8e3;border:1px solid #faebcc;padding:.5em .8em}
.outcome{font-size:1.15em;font-weight:600}
.verdict{font-size:1.15em;font-weight:600}.verdict.ok{color:#2e7d32}.verdict.bad{color:#c0392b}
nav a{margin-right:1em}
"""

SECTIONS = (('timeline', 'Component timeline'), ('spans', 'Training window and path'),
            ('data', 'Data'), ('tuning', 'Tuner trials'),
            ('training', 'Training'), ('evaluation', 'Evaluation'), ('push', 'Push'))


def outcome(inputs: ReportInputs) -> str:
  """One line for the top of the page: what failed, or the decision and the push."""
  if not isinstance(inputs.timeline, Missing):
    failed = [r.node_id for r in inputs.timeline if r.state == 'FAILED']
    if failed:
      return f'FAILED in {", ".join(failed)}.'
  evaluation = inputs.evaluation
  if isinstance(evaluation, Missing) or evaluation.blessed is None:
    return 'No decision: the Evaluator left no blessing.'
  if not evaluation.blessed:
    return 'NOT blessed: nothing pushed.'
  if isinstance(inputs.pushed_to, Missing):
    return 'BLESSED, but not pushed.'
  return f'BLESSED and pushed to {inputs.pushed_to}.'


def build_report(inputs: ReportInputs) -> str:
  """The whole page as one string; no file or MLMD access."""
  bodies = {
      'timeline': timeline_section(inputs.timeline, inputs.compute),
      'spans': spans_section(inputs.spans),
      'data': data_section(inputs.counts, inputs.class_names),
      'tuning': tuning_section(inputs.tuning),
      'training': training_section(inputs.history),
      'evaluation': evaluation_section(inputs.evaluation, inputs.class_names, inputs.gate),
      'push': push_section(inputs.pushed_to),
  }
  started = datetime.datetime.fromtimestamp(inputs.started).strftime('%Y-%m-%d %H:%M:%S')
  nav = ''.join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS)
  sections = ''.join(f'<section id="{key}"><h2>{_e(title)}</h2>{bodies[key]}</section>'
                     for key, title in SECTIONS)
  return (
      '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
      f'<title>{_e(inputs.title)}</title><style>{_CSS}</style></head><body>'
      f'<h1>{_e(inputs.title)}</h1><p class="outcome">{_e(outcome(inputs))}</p>'
      f'<p class="meta">Run started {_e(started)}, preset <b>{_e(inputs.preset)}</b>, pipeline '
      f'root <code>{_e(inputs.pipeline_root)}</code>. TensorBoard: <code>tensorboard --logdir '
      f'{_e(inputs.pipeline_root)}</code></p><nav>{nav}</nav>{sections}</body></html>')


# ----------------------------------------------------------------------------
# Reading a run: MLMD and artifact files -> ReportInputs.

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


def gather(config: PipelineConfig, since: float) -> ReportInputs:
  """Reads this run's MLMD records and artifact files into ReportInputs."""
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
  return ReportInputs(
      title=f'{config.pipeline_name}: run report',
      started=since,
      pipeline_root=config.pipeline_root,
      preset=config.preset,
      gate=dataclasses.asdict(config.gate),
      timeline=load_timeline(list(run.runs.values())),
      class_names=class_names,
      counts=counts,
      tuning=load_tuning(run),
      history=history_path if isinstance(history_path, Missing) else _read_json(history_path),
      evaluation=load_evaluation(run, len(class_names), class_names),
      pushed_to=load_push(run),
      spans=load_spans(run),
      compute=run_summary.compute_line(run.store, list(run.runs.values()), config)
      if run.store else '')


def write_report(config: PipelineConfig, since: float) -> str:
  """Builds the report of the run that started at `since`; returns its path."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(config.pipeline_root, REPORT_FILE)
  page = build_report(gather(config, since))
  tf.io.gfile.makedirs(config.pipeline_root)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(page)
  return path
