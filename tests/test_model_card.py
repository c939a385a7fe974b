"""The model card: rendered from gathered run facts, and written into a version by the Pusher.

The facts are test_report.py's full set (the same `RunFacts` that report.html
shows), with the training record added. The card of a real pushed version is
checked in test_pipeline_e2e.py, on the shared smoke runs.
"""

import base64
import dataclasses
import errno
import html
import json
import os
import re

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as keys

from components import pusher
from test_report import PNG_SIGNATURE, full_inputs
from tfx_pipeline import config as config_lib
from tfx_pipeline import model_card
from tfx_pipeline import run_facts as facts


def card_facts(**changes) -> facts.RunFacts:
  return full_inputs(**{
      'source': 'image folder /data/pets', 'model': {'variant': 'cifar', 'image_size': 64},
      'training': facts.Training(hparams={'dropout': 0.25, 'learning_rate': 0.01},
                                 source="the Tuner's best trial (trial 1)",
                                 warm_start='cold start (no blessed model)', state='done',
                                 seconds=95.0), **changes})


def signatures():
  return [model_card.Signature('serving_default', [['image_bytes', 'string', '(None)']],
                               [['class_ids', 'int64', '(None)'],
                                ['probabilities', 'float32', '(None, 3)']]),
          model_card.Signature('serving_tf_example', [['examples', 'string', '(None)']],
                               [['probabilities', 'float32', '(None, 3)']])]


def render(facts_: facts.RunFacts, sigs=None):
  context = model_card.card_context(facts_, signatures() if sigs is None else sigs,
                                    'cifar10-alexnet', '/root/Trainer/model/7/Format-Serving',
                                    1.7e9)
  return model_card.render_html(context), model_card.render_markdown(context)


def pngs(text: str):
  return [base64.b64decode(m) for m in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)',
                                                   text)]


def test_both_cards_show_accuracy_classes_decision_and_training():
  page, md = render(card_facts())
  for text in (html.unescape(page), md):
    assert 'Eval accuracy' in text and '0.6200' in text  # the candidate's accuracy
    assert 'cat, dog, frog' in text
    assert 'NOT blessed' in text and '0.7000' in text and '-0.0800' in text  # vs baseline
    assert 'image folder /data/pets' in text and 'train (hash, 10%)' in text
    assert 'variant' in text and 'cifar' in text and "the Tuner's best trial (trial 1)" in text
    assert 'learning_rate' in text and '0.01' in text and '0.25' in text
    assert '1m35s' in text and '2 epochs;' in text  # wall time, history length
    assert 'train/cat/broken.jpg' in text and 'Invalid JPEG data' in text
    assert 'serving_tf_example' in text and 'v1/models/cifar10:predict' in text
    assert '"image_bytes": {"b64":' in text
    # images per class, curves, confusion matrix: the report's plots
    assert len(pngs(text)) == 3 and all(p.startswith(PNG_SIGNATURE) for p in pngs(text))
  assert '<td>cat</td><td>3</td><td>0.667</td>' in page  # per class: 2 of 3
  assert '| cat | 3 | 0.667 |' in md
  assert '<title>cifar10-alexnet: model card</title>' in page and md.startswith(
      '# cifar10-alexnet: model card\n')


def test_limitations_name_the_input_size_the_classes_and_the_weakest_ones():
  page, md = render(card_facts())
  for text in (html.unescape(page), md):
    assert 'upscaled 2x' in text  # 32x32 photos at 64x64
    assert 'only these 3 classes: cat, dog, frog' in text
    assert 'weakest (below the class average) on cat (0.667), frog (0.667).' in text
    assert 'frog taken for cat (1 eval images)' in text  # ties: the later cell
  assert 'upscaled' not in model_card.input_words(32)
  assert 'upscaled 7.09x' in model_card.input_words(227)


def test_per_class_rows_prefer_tfmas_slices_and_show_the_baseline():
  evaluation = dataclasses.replace(card_facts().evaluation, class_accuracy={
      'candidate': {0: 0.25, 1: 1.0, 2: 0.5}, 'baseline': {0: 0.5, 1: 1.0}})
  rows = model_card.class_rows(card_facts(evaluation=evaluation))
  assert [(r['name'], r['accuracy'], r['baseline']) for r in rows] == [
      ('cat', 0.25, 0.5), ('dog', 1.0, 1.0), ('frog', 0.5, None)]
  assert [r['name'] for r in model_card.weakest(rows, 2)] == ['cat', 'frog']
  _, md = render(card_facts(evaluation=evaluation))
  assert '| cat | 3 | 0.250 | 0.500 | -0.250 |' in md
  assert '| frog | 3 | 0.500 | - | - |' in md
  assert model_card.most_confused([[5, 0], [0, 5]], ['a', 'b']) is None
  assert model_card.most_confused([[5, 1], [3, 5]], ['a', 'b']) == \
      {'true': 'b', 'predicted': 'a', 'images': 3}


def test_with_several_spans_the_counts_say_which_span_they_are_of():
  spans = facts.Spans([facts.SpanRow(1, 40, 5, False), facts.SpanRow(2, 8, 1, True)], [])
  page, md = render(card_facts(spans=spans))
  assert '| span 1 | 40 | 5 |' in md and '| span 2 | 8 | 1 |' in md
  for text in (page, md):
    assert 'Images per class of span 2, the one this run ingested' in text
  _, md = render(card_facts(spans=facts.Spans([facts.SpanRow(0, 8, 3, True)], [])))
  assert '| plain tree | 8 | 3 |' in md and 'Images per class of' not in md


def test_missing_facts_become_sentences_not_crashes():
  why = facts.Missing
  page, md = render(card_facts(
      counts=why('No data counts: the ImageExampleGen FAILED in this run.'),
      history=why('No training history: the Trainer did not run in this run.'),
      training=why('No hyperparameters: the Trainer did not run in this run.'),
      evaluation=why('No evaluation: the Evaluator did not run in this run.'), class_names=[]),
      why('No signatures: /x/saved_model.pb does not exist.'))
  for text in (page, md):
    assert pngs(text) == []
    for reason in ('ImageExampleGen FAILED', 'Trainer did not run', 'Evaluator did not run',
                   '/x/saved_model.pb does not exist'):
      assert reason in text
    assert 'no blessing recorded' in text and 'curl' not in text


def test_text_from_the_run_is_escaped_in_html_and_kept_out_of_markdown_cells():
  page, md = render(card_facts(class_names=['<b>c|a|t</b>', 'dog', 'frog']))
  assert '<b>c|a|t</b>' not in page and '&lt;b&gt;c|a|t&lt;/b&gt;' in page
  assert '| <b>c\\|a\\|t</b> | 3 | 0.667 |' in md


def save_signature_model(path: str) -> None:
  """A SavedModel with the serving signature's input and outputs, and no network."""
  module = tf.Module()

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='image_bytes')])
  def serve(image_bytes):
    n = tf.shape(image_bytes)[0]
    return {'probabilities': tf.fill([n, 3], 1 / 3), 'class_ids': tf.zeros([n], tf.int64)}

  module.serve = serve
  tf.saved_model.save(module, path, signatures={'serving_default': serve})


def test_signatures_are_read_from_the_saved_model_without_loading_it(tmp_path):
  save_signature_model(str(tmp_path))
  sigs = model_card.read_signatures(str(tmp_path))
  assert sigs == [model_card.Signature(
      'serving_default', [['image_bytes', 'string', '(None)']],
      [['class_ids', 'int64', '(None)'], ['probabilities', 'float32', '(None, 3)']])]
  assert '"image_bytes": {"b64":' in model_card.example_requests(sigs)[0]
  missing = model_card.read_signatures(str(tmp_path / 'nothing'))
  assert isinstance(missing, facts.Missing) and 'saved_model.pb' in missing.reason


def test_the_pusher_config_survives_json():
  config = dataclasses.replace(config_lib.smoke(), beam_args=('--a=1',))
  values = json.loads(json.dumps(model_card.pusher_config(config)))
  assert config_lib.pipeline_config_from_dict(values[model_card.CONFIG_KEY]) == config


def test_the_pipeline_gives_the_pusher_its_config(tmp_path):
  from tfx_pipeline import pipeline
  cfg = dataclasses.replace(config_lib.smoke(), pipeline_root=str(tmp_path / 'root'),
                            serving_dir=str(tmp_path / 'serving'))
  nodes = {c.id: c for c in pipeline.create_pipeline(cfg).components}
  given = json.loads(nodes['Pusher'].exec_properties['custom_config'])
  assert config_lib.pipeline_config_from_dict(given[model_card.CONFIG_KEY]) == cfg


def run_pusher(tmp_path, config=None):
  """The Pusher executor on a tiny blessed model, with or without a pipeline config."""
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'model')
  save_signature_model(os.path.join(model.uri, 'Format-Serving'))
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  blessing.set_int_custom_property('blessed', 1)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / 'pushed')
  exec_properties = {keys.PUSH_DESTINATION_KEY: json.dumps(
      {'filesystem': {'base_directory': str(tmp_path / 'serving')}})}
  if config is not None:
    exec_properties['custom_config'] = json.dumps(model_card.pusher_config(config))
  pusher.Executor().Do({keys.MODEL_KEY: [model], keys.MODEL_BLESSING_KEY: [blessing]},
                       {keys.PUSHED_MODEL_KEY: [pushed]}, exec_properties)
  versions = os.listdir(tmp_path / 'serving')
  return [os.path.join(tmp_path / 'serving', v) for v in versions]


def smoke_config(tmp_path):
  return dataclasses.replace(config_lib.smoke(), pipeline_root=str(tmp_path / 'root'),
                             serving_dir=str(tmp_path / 'serving'))


def test_the_pusher_writes_the_card_into_the_version_before_it_appears(tmp_path, monkeypatch):
  seen = []
  rename = os.rename

  def watch(src, dst):  # what the version holds at the moment it appears
    seen.append(sorted(os.listdir(os.path.join(src, 'assets.extra'))))
    rename(src, dst)

  monkeypatch.setattr(pusher.os, 'rename', watch)
  version, = run_pusher(tmp_path, smoke_config(tmp_path))
  assert seen == [['model_card.html', 'model_card.md']]
  md = open(os.path.join(version, 'assets.extra', 'model_card.md')).read()
  page = open(os.path.join(version, 'assets.extra', 'model_card.html')).read()
  number = os.path.basename(version)  # the card names the version it became
  assert md.startswith(f'# cifar10-alexnet: model card, version {number}\n')
  assert f' as version {number} from ' in md and f' as version <b>{number}</b> ' in page
  # No run in MLMD here: every run fact is a sentence; the signatures come from the model.
  assert 'No data counts: the ImageExampleGen did not run in this run' in md
  assert '| input | image_bytes | string | (None) |' in md


def test_without_a_config_the_pusher_pushes_without_a_card(tmp_path):
  version, = run_pusher(tmp_path)
  assert not os.path.exists(os.path.join(version, 'assets.extra'))


def test_a_card_that_fails_warns_and_the_version_is_still_pushed(tmp_path, monkeypatch):
  warnings = []
  monkeypatch.setattr(model_card.logging, 'warning', lambda *a: warnings.append(a[0] % a[1:]))
  monkeypatch.setattr(model_card.run_facts, 'gather',
                      lambda *a: (_ for _ in ()).throw(ValueError('bad facts')))
  version, = run_pusher(tmp_path, smoke_config(tmp_path))
  assert not os.path.exists(os.path.join(version, 'assets.extra', 'model_card.md'))
  assert warnings == ['No model card for this version: ValueError: bad facts']


def test_a_full_disk_while_writing_the_card_pushes_nothing(tmp_path, monkeypatch):
  def full(*_):
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(model_card, 'write_card', full)
  with pytest.raises(Exception, match='disk is full'):
    run_pusher(tmp_path, smoke_config(tmp_path))
  assert os.listdir(tmp_path / 'serving') == []  # no version, no temporary copy
