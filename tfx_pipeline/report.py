"""report.html: one self-contained page about one pipeline run, a view over its RunFacts.

Why: the console summary says what ran and whether a model was pushed; this
page says why -- how long each component took, what the data looked like,
how the search and the training went, where the model errs, and how the
Evaluator decided. It is one HTML file with its plots embedded as base64 PNGs,
so it can be mailed, attached to a ticket or opened from a bucket.

    run_facts.gather(config, since) -> RunFacts   reads MLMD and the artifact files
    build_report(facts)             -> str        pure: facts -> HTML
    write_report(config, since)     -> path       both, into <pipeline_root>/report.html

The model card of a pushed version (model_card.py) is the other view over the
same facts and the same plots (plots.py). Every section takes either its data
or a `Missing(reason)` and shows the reason in its place.
"""

from __future__ import annotations

import datetime
import html
import os
from typing import Any, Dict, List, Mapping, Sequence, Union

from tfx_pipeline import plots
from tfx_pipeline import run_summary
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.run_facts import Evaluation
from tfx_pipeline.run_facts import Missing
from tfx_pipeline.run_facts import RunFacts
from tfx_pipeline.run_facts import Spans
from tfx_pipeline.run_facts import TimelineRow
from tfx_pipeline.run_facts import Tuning
from tfx_pipeline.run_facts import best_trial_id
from tfx_pipeline.run_facts import gather
from tfx_pipeline.run_facts import per_class_accuracy

REPORT_FILE = 'report.html'


def _e(value: Any) -> str:
  return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
  return f'<img alt="{_e(alt)}" src="{plots.data_uri(png)}">'


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
          + _img(plots.timeline_png(timeline), 'component timeline')
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
           _img(plots.class_counts_png(counts, names), 'images per class'),
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
          + _img(plots.trials_png(trials, best), 'score per trial, and against the learning rate')
          + _table(['trial', 'score'] + [n.replace('tuner/', '') for n in names], rows, marks))


def training_section(history: Union[List[Dict[str, float]], Missing]) -> str:
  if isinstance(history, Missing):
    return _missing(history)
  if not history:
    return _missing(Missing('history.json holds no epoch.'))
  keys = [k for k in history[0] if k != 'epoch']
  rows = [[row['epoch']] + [_fmt(row.get(k)) for k in keys] for row in history]
  return _img(plots.curves_png(history), 'training curves') + _table(['epoch'] + keys, rows)


def gate_rules(gate: Mapping[str, float]) -> str:
  """The Evaluator's rules in one sentence, from the config's gate section."""
  regression = gate.get('max_regression', 0)
  per_class = gate.get('max_class_regression', 1.0)
  return (f'Rules: eval accuracy at least {gate.get("min_accuracy", 0):.2f}, and '
          + (f'at most {regression:.4f} below' if regression else 'not below')
          + ' the latest blessed model\'s'
          + (f'; on every class, at most {per_class:.3f} below the baseline\'s'
             if per_class < 1.0 else '')
          + (f' and at least {gate["min_class_accuracy"]:.3f}'
             if gate.get('min_class_accuracy') else '') + '.')


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
  parts.append(f'<p>{gate_rules(gate)}</p>')  # numbers from the config: nothing to escape
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
    parts.append(_img(plots.confusion_png(evaluation.confusion, names), 'confusion matrix'))
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


CSS = """
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


def outcome(inputs: RunFacts) -> str:
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


def build_report(inputs: RunFacts) -> str:
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
      f'<title>{_e(inputs.title)}</title><style>{CSS}</style></head><body>'
      f'<h1>{_e(inputs.title)}</h1><p class="outcome">{_e(outcome(inputs))}</p>'
      f'<p class="meta">Run started {_e(started)}, preset <b>{_e(inputs.preset)}</b>, pipeline '
      f'root <code>{_e(inputs.pipeline_root)}</code>. TensorBoard: <code>tensorboard --logdir '
      f'{_e(inputs.pipeline_root)}</code></p><nav>{nav}</nav>{sections}</body></html>')


def write_report(config: PipelineConfig, since: float) -> str:
  """Builds the report of the run that started at `since`; returns its path."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(config.pipeline_root, REPORT_FILE)
  page = build_report(gather(config, since))
  tf.io.gfile.makedirs(config.pipeline_root)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(page)
  return path