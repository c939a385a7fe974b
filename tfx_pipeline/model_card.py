"""The model card of a pushed version: model_card.html and model_card.md in its assets.extra/.

Why: before routing traffic to a version, its users need to know what it is --
what data it saw, how it was trained and tuned, how it scored against the
model it replaces, how to call it and where it is weak. The card is the
second view over the run's `RunFacts` (run_facts.py), beside report.html, and
embeds the same plots (plots.py); Model Card Toolkit cannot be installed with
this project's pins (it needs tfma < 0.42 and absl < 1.1), so the card is two
Jinja2 templates (tfx_pipeline/templates/).

    card_context(facts, signatures, ...) -> dict           pure: what the card says
    render_html(context), render_markdown(context) -> str  pure: the two files
    write_card(version_dir, facts, ...) -> [paths]         into <version_dir>/assets.extra/
    for_push(exec_properties, run_id) -> hook               what components/pusher.py calls

The Pusher calls the hook on its temporary copy, before the rename that makes
the version appear, so a version never exists without its card. TF Serving
reads only `tf_serving_warmup_requests` from assets.extra/ and ignores the
rest. The Pusher receives the pipeline config through its `custom_config`
(`pusher_config()`), finds the run's start in MLMD from the pipeline run id,
and gathers the facts as report.html does.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import jinja2
import markupsafe
from absl import logging

from tfx_pipeline import config as config_lib
from tfx_pipeline import plots
from tfx_pipeline import report
from tfx_pipeline import run_facts
from tfx_pipeline import run_summary
from tfx_pipeline.run_facts import Missing
from tfx_pipeline.run_facts import RunFacts

CARD_HTML = 'model_card.html'
CARD_MD = 'model_card.md'
ASSETS_EXTRA = 'assets.extra'  # TF Serving reads only its warm-up file from here
CONFIG_KEY = 'model_card'  # the Pusher's custom_config entry
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'templates')
MODEL_NAME = 'cifar10'  # the model's name in serving/models.config
CIFAR_SIDE = 32  # CIFAR-10 photos are 32x32 pixels
WEAKEST = 3  # classes named as the weakest
SKIPPED_LISTED = 50  # skipped files named on the card; the count covers all
_INIT_OP = '__saved_model_init_op'  # a SavedModel's bookkeeping signature, not callable


@dataclasses.dataclass(frozen=True)
class Signature:
  """One serving signature: (key, dtype, shape) of each input and output."""
  name: str
  inputs: List[List[str]]
  outputs: List[List[str]]


# ----------------------------------------------------------------------------
# Signatures, from the SavedModel's protocol buffer (no TensorFlow session).

def _shape(tensor_shape) -> str:
  if tensor_shape.unknown_rank:
    return 'any'
  return '(' + ', '.join('None' if d.size < 0 else str(d.size) for d in tensor_shape.dim) + ')'


def signatures_from_proto(saved_model) -> List[Signature]:
  """The callable signatures of a `saved_model_pb2.SavedModel`, sorted by name."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  found = []
  for name, sig in sorted(saved_model.meta_graphs[0].signature_def.items()):
    if name == _INIT_OP:
      continue
    rows = lambda infos: [[k, tf.dtypes.as_dtype(v.dtype).name, _shape(v.tensor_shape)]
                          for k, v in sorted(infos.items())]
    found.append(Signature(name, rows(sig.inputs), rows(sig.outputs)))
  return found


def read_signatures(model_dir: str) -> Union[List[Signature], Missing]:
  """The signatures of the SavedModel in `model_dir`, or why there are none."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_dir, 'saved_model.pb')
  if not tf.io.gfile.exists(path):
    return Missing(f'No signatures: {path} does not exist.')
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(path, 'rb') as f:
    saved_model.ParseFromString(f.read())
  return signatures_from_proto(saved_model)


def example_requests(signatures: Sequence[Signature]) -> List[str]:
  """Shell commands that call the default signature: REST with curl, and serving.client."""
  from components import features  # pylint: disable=g-import-not-at-top
  default = next((s for s in signatures if s.name == features.SERVING_SIGNATURE), None)
  if default is None or not default.inputs:
    return []
  key = default.inputs[0][0]
  return [
      'IMG=$(base64 < cat.jpg | tr -d \'\\n\')\n'
      f'curl -s -X POST http://localhost:8501/v1/models/{MODEL_NAME}:predict \\\n'
      '  -H \'Content-Type: application/json\' \\\n'
      f'  -d \'{{"signature_name": "{default.name}", "instances": '
      f'[{{"{key}": {{"b64": "\'"$IMG"\'"}}}}]}}\'',
      'python -m serving.client cat.jpg --model-dir "$VERSION_DIR"',
  ]


# ----------------------------------------------------------------------------
# What the card says, from the facts: plain data for both templates.

def class_rows(facts: RunFacts) -> List[Dict[str, Any]]:
  """Per class: eval images, accuracy, and the baseline's accuracy when there was one."""
  evaluation = facts.evaluation
  if isinstance(evaluation, Missing) or not evaluation.confusion:
    return []
  matrix = evaluation.confusion
  names = list(facts.class_names) if len(facts.class_names) == len(matrix) else \
      [str(i) for i in range(len(matrix))]
  candidate = evaluation.class_accuracy.get('candidate', {})
  baseline = evaluation.class_accuracy.get('baseline', {})
  from_matrix = run_facts.per_class_accuracy(matrix)
  rows = []
  for i, (name, row) in enumerate(zip(names, matrix)):
    accuracy = candidate.get(i, from_matrix[i])
    rows.append({'name': name, 'images': sum(row), 'accuracy': accuracy,
                 'baseline': baseline.get(i)})
  return rows


def weakest(rows: Sequence[Mapping[str, Any]], n: int = WEAKEST) -> List[Mapping[str, Any]]:
  """Up to `n` classes below the average class accuracy, lowest first.

  Classes absent from the eval split are left out.
  """
  scored = [r for r in rows if r['accuracy'] is not None and r['images']]
  if not scored:
    return []
  mean = sum(r['accuracy'] for r in scored) / len(scored)
  below = [r for r in scored if r['accuracy'] < mean]
  return sorted(below, key=lambda r: (r['accuracy'], r['name']))[:n]


def most_confused(matrix: Sequence[Sequence[float]],
                  names: Sequence[str]) -> Optional[Dict[str, Any]]:
  """The largest off-diagonal cell: which true class is most often taken for which."""
  cells = [(matrix[i][j], i, j) for i in range(len(matrix)) for j in range(len(matrix))
           if i != j and matrix[i][j]]
  if not cells:
    return None
  count, i, j = max(cells)
  return {'true': names[i], 'predicted': names[j], 'images': count}


def decision(facts: RunFacts) -> str:
  evaluation = facts.evaluation
  if isinstance(evaluation, Missing) or evaluation.blessed is None:
    return 'no blessing recorded'
  return 'BLESSED' if evaluation.blessed else 'NOT blessed'


def input_words(image_size: int) -> str:
  """What happens to an input's pixels before the network sees them."""
  side = f'{image_size}x{image_size}'
  if image_size > CIFAR_SIDE:
    return (f'Every input is decoded and resized to {side} pixels: a {CIFAR_SIDE}x{CIFAR_SIDE} '
            f'CIFAR-10 photo is upscaled {image_size / CIFAR_SIDE:.3g}x, which adds no detail '
            'the original did not have.')
  return (f'Every input is decoded and resized to {side} pixels: CIFAR-10 photos are used at '
          'their own size, and larger photos lose their fine detail.')


def limitations(facts: RunFacts, rows: Sequence[Mapping[str, Any]]) -> List[str]:
  """Known limitations in sentences: input size, the closed set of classes, weak classes."""
  found = []
  if facts.model.get('image_size'):
    found.append(input_words(int(facts.model['image_size'])))
  if facts.class_names:
    found.append(f'It knows only these {len(facts.class_names)} classes: '
                 f'{", ".join(facts.class_names)}. Any other image still gets one of them, '
                 'since the probabilities sum to 1; there is no "none of these" answer.')
  weak = weakest(rows)
  if weak:
    found.append('Accuracy on the eval split is weakest (below the class average) on '
                 + ', '.join(f'{r["name"]} ({r["accuracy"]:.3f})' for r in weak) + '.')
  evaluation = facts.evaluation
  if not isinstance(evaluation, Missing) and evaluation.confusion and rows:
    pair = most_confused(evaluation.confusion, [r['name'] for r in rows])
    if pair:
      found.append(f'The most frequent error: {pair["true"]} taken for {pair["predicted"]} '
                   f'({pair["images"]:g} eval images).')
  found.append('Every accuracy figure is measured on the eval split of the training source; '
               'photos from another camera, crop or distribution may score lower.')
  return found


def _fmt(value: Any, digits: int = 4) -> str:
  if value is None:
    return '-'
  return f'{value:.{digits}f}' if isinstance(value, float) else str(value)


def data_context(facts: RunFacts) -> Dict[str, Any]:
  counts, names = facts.counts, list(facts.class_names)
  found: Dict[str, Any] = {'source': facts.source or 'not recorded', 'spans': [],
                           'missing': ''}
  if not isinstance(facts.spans, Missing):
    found['spans'] = [{'span': 'plain tree' if r.span == 0 else f'span {r.span}',
                       'train': _fmt(r.train_images), 'eval': _fmt(r.eval_images)}
                      for r in facts.spans.rows]
    ingested = [r.span for r in facts.spans.rows if r.ingested_now and r.span]
    if len(facts.spans.rows) > 1 and ingested:  # the counts below are of one span only
      found['counts_of'] = f'span {ingested[0]}, the one this run ingested'
  if isinstance(counts, Missing):
    found['missing'] = counts.reason
    return found
  splits = list(counts['splits'])
  names = names or sorted({c for s in splits for c in counts['splits'][s].get('classes', {})})
  found['splits'] = splits
  found['eval_from'] = counts.get('eval_from', '')
  found['classes'] = [
      {'name': n, 'written': [counts['splits'][s].get('classes', {}).get(n, {}).get('written', 0)
                              for s in splits]} for n in names]
  found['totals'] = [counts['splits'][s].get('written', 0) for s in splits]
  skipped = counts.get('skipped_files') or []
  found['skipped_count'] = len(skipped)
  found['skipped'] = [dict(zip(('split', 'file', 'reason'), (line.split('\t') + ['', ''])[:3]))
                      for line in skipped[:SKIPPED_LISTED]]
  found['class_counts_png'] = plots.data_uri(plots.class_counts_png(counts, names))
  return found


def training_context(facts: RunFacts) -> Dict[str, Any]:
  found: Dict[str, Any] = {'variant': facts.model.get('variant', '?'),
                           'image_size': facts.model.get('image_size', '?'), 'missing': ''}
  training = facts.training
  if isinstance(training, Missing):
    found['missing'] = training.reason
  else:
    found.update(
        hparams=[(k, f'{v:.4g}' if isinstance(v, float) else str(v))
                 for k, v in sorted(training.hparams.items())],
        source=training.source, warm_start=training.warm_start,
        wall_time=run_summary.format_seconds(training.seconds) if training.seconds is not None
        else 'trained in an earlier run (this run reused it from the cache)')
  history = facts.history
  if isinstance(history, Missing):
    found['history_missing'] = history.reason
  elif history:
    last = history[-1]
    found.update(epochs=f'{len(history)} epoch' + ('' if len(history) == 1 else 's'),
                 epoch_seconds=run_summary.format_seconds(sum(r['seconds'] for r in history))
                 if all('seconds' in r for r in history) else '',
                 last=', '.join(f'{k} {_fmt(v)}' for k, v in last.items()
                                if k not in ('epoch', 'seconds', 'steps')),
                 curves_png=plots.data_uri(plots.curves_png(history)))
  return found


def evaluation_context(facts: RunFacts, rows: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
  evaluation = facts.evaluation
  found: Dict[str, Any] = {'decision': decision(facts), 'rules': report.gate_rules(facts.gate),
                           'missing': ''}
  if isinstance(evaluation, Missing):
    found['missing'] = evaluation.reason
    return found
  candidate = evaluation.accuracy.get('candidate')
  baseline = evaluation.accuracy.get('baseline')
  found.update(
      accuracy=_fmt(candidate), baseline=_fmt(baseline) if baseline is not None else '',
      change=f'{candidate - baseline:+.4f}' if None not in (candidate, baseline) else '',
      baseline_uri=evaluation.baseline_uri or '', failures=list(evaluation.failures),
      with_baseline=any(r['baseline'] is not None for r in rows),
      classes=[{'name': r['name'], 'images': f'{r["images"]:g}',
                'accuracy': _fmt(r['accuracy'], 3), 'baseline': _fmt(r['baseline'], 3),
                'change': '-' if None in (r['accuracy'], r['baseline'])
                else f'{r["accuracy"] - r["baseline"]:+.3f}'} for r in rows])
  if evaluation.confusion and rows:
    found['confusion_png'] = plots.data_uri(
        plots.confusion_png(evaluation.confusion, [r['name'] for r in rows]))
  return found


def card_context(facts: RunFacts, signatures: Union[List[Signature], Missing],
                 name: str, model_path: str, created: float,
                 version: Optional[int] = None) -> Dict[str, Any]:
  """Everything both templates show, from the run's facts and the model's signatures."""
  rows = class_rows(facts)
  return {
      'title': f'{name}: model card' + (f', version {version}' if version is not None else ''),
      'version': version,
      'created': datetime.datetime.fromtimestamp(created).strftime('%Y-%m-%d %H:%M:%S'),
      'model_path': model_path, 'preset': facts.preset, 'pipeline_root': facts.pipeline_root,
      'class_names': list(facts.class_names),
      'data': data_context(facts),
      'training': training_context(facts),
      'evaluation': evaluation_context(facts, rows),
      'signatures': [] if isinstance(signatures, Missing) else signatures,
      'signatures_missing': signatures.reason if isinstance(signatures, Missing) else '',
      'requests': [] if isinstance(signatures, Missing) else example_requests(signatures),
      'model_name': MODEL_NAME,
      'limitations': limitations(facts, rows),
  }


# ----------------------------------------------------------------------------
# The two templates (tfx_pipeline/templates/).

def _cell(value: Any) -> str:
  """Text safe inside a Markdown table cell or emphasis: no pipe, no line break."""
  return str(value).replace('|', '\\|').replace('\n', ' ')


def _environment(autoescape: bool) -> jinja2.Environment:
  env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                           trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
  env.filters['cell'] = _cell
  return env


def render_html(context: Mapping[str, Any]) -> str:
  template = _environment(autoescape=True).get_template(CARD_HTML + '.j2')
  return template.render(css=markupsafe.Markup(report.CSS), **context)


def render_markdown(context: Mapping[str, Any]) -> str:
  """The card in Markdown; runs of blank lines that skipped sections leave become one."""
  text = _environment(autoescape=False).get_template(CARD_MD + '.j2').render(**context)
  return re.sub(r'\n{3,}', '\n\n', text).strip() + '\n'


def write_card(version_dir: str, facts: RunFacts, name: str, model_path: str,
               created: float, version: Optional[int] = None) -> List[str]:
  """Writes both cards into `<version_dir>/assets.extra/`; returns their paths."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  context = card_context(facts, read_signatures(version_dir), name, model_path, created,
                         version)
  folder = os.path.join(version_dir, ASSETS_EXTRA)
  tf.io.gfile.makedirs(folder)
  paths = []
  for file_name, text in ((CARD_HTML, render_html(context)),
                          (CARD_MD, render_markdown(context))):
    path = os.path.join(folder, file_name)
    with tf.io.gfile.GFile(path, 'w') as f:
      f.write(text)
    paths.append(path)
  return paths


# ----------------------------------------------------------------------------
# The Pusher's side: the config it is given, the run it is in.

def pusher_config(config: config_lib.PipelineConfig) -> Dict[str, Any]:
  """The Pusher's custom_config: the pipeline config, which the card's facts need."""
  return {CONFIG_KEY: dataclasses.asdict(config)}


def run_start(metadata_path: str, pipeline_run_id: Optional[str]) -> float:
  """When the pipeline run `pipeline_run_id` started (its first execution), in epoch seconds.

  0.0 when unknown: `gather` then takes each component's latest execution.
  """
  if not pipeline_run_id or not os.path.exists(metadata_path):
    return 0.0
  store = run_summary.open_store(metadata_path)
  context = store.get_context_by_type_and_name('pipeline_run', pipeline_run_id)
  times = [e.create_time_since_epoch for e in store.get_executions_by_context(context.id)] \
      if context is not None else []
  return (min(times) - 1) / 1e3 if times else 0.0


def for_push(exec_properties: Mapping[str, Any], pipeline_run_id: Optional[str],
             model_path: str) -> Optional[Callable[[str, int], None]]:
  """The Pusher's hook: writes the card into a version directory before it appears.

  None when the Pusher was given no config (a pipeline built elsewhere). A card
  that cannot be built warns and lets the push go on, unless the disk is full.
  """
  from components import disk_space  # pylint: disable=g-import-not-at-top
  values = json.loads(exec_properties.get('custom_config') or 'null') or {}
  if CONFIG_KEY not in values:
    return None
  config = config_lib.pipeline_config_from_dict(values[CONFIG_KEY])

  def write(version_dir: str, version: int) -> None:
    try:
      facts = run_facts.gather(config, run_start(config.metadata_path, pipeline_run_id))
      for path in write_card(version_dir, facts, config.pipeline_name, model_path,
                             datetime.datetime.now().timestamp(), version):
        logging.info('Model card: %s', path)
    except Exception as e:  # pylint: disable=broad-except
      if disk_space.is_disk_full(e):
        raise
      logging.warning('No model card for this version: %s: %s', e.__class__.__name__, e)

  return write
