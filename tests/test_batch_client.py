"""The standalone folder route: `python -m serving.client DIR --model-dir ... --output preds.jsonl`.

Bounded batches, refusals pinned on single files by halving, the same rows as
the pipeline's BulkInferrer branch, skipped files listed (serving/batch.py).
"""

import json
import os
import re

import numpy as np
import pytest

import fixtures
from components.bulk_inference import rows
from serving import batch
from serving import client


class FakeModel:
  """Scores images by their first byte; refuses a batch holding an image that starts 'BAD'."""

  def __init__(self):
    self.batch_sizes = []

  def __call__(self, images):
    self.batch_sizes.append(len(images))
    if any(b'BAD' in image[:16] for image in images):
      raise client.RefusedError('the model refused the request: Invalid JPEG data')
    probabilities = np.array([np.eye(4)[image[-1] % 4] * 0.7 + 0.075 for image in images])
    return client.Prediction(probabilities, [''] * len(images))


def write_folder(root, good, bad, other):
  for i, path in enumerate(good):
    os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
    with open(os.path.join(root, path), 'wb') as f:
      f.write(client.JPEG_MAGIC + b'image' + bytes([i]))
  for path in bad:
    with open(os.path.join(root, path), 'wb') as f:
      f.write(client.PNG_MAGIC + b'BAD')
  for path in other:
    with open(os.path.join(root, path), 'wb') as f:
      f.write(b'plain text')


def test_batches_stay_bounded_and_a_refusal_is_pinned_on_its_file(tmp_path):
  good = [f'd{i % 3}/{i:03d}.jpg' for i in range(37)]
  bad, other = ['d1/x-bad.png', 'zz-bad.png'], ['notes.txt']
  folder = str(tmp_path / 'in')
  write_folder(folder, good, bad, other)
  model, out = FakeModel(), (tmp_path / 'out.jsonl').open('w')
  result = batch.score_folder(folder, model, out, 2, ['a', 'b', 'c', 'd'], 8)
  out.close()
  found = [json.loads(line) for line in (tmp_path / 'out.jsonl').open()]
  assert sorted(r['path'] for r in found) == sorted(good)  # every good image, once
  assert max(model.batch_sizes) <= 8
  assert dict(result.skipped) == {
      'd1/x-bad.png': 'the model refused the request: Invalid JPEG data',
      'zz-bad.png': 'the model refused the request: Invalid JPEG data',
      'notes.txt': 'not a JPEG or PNG file'}
  # 40 files, 5 batches of 8 (notes.txt never sent); each bad one costs a few halvings,
  # far fewer requests than one per image.
  assert len(model.batch_sizes) <= 5 + 2 * 2 * 3 and result.scored == len(good)
  assert result.batches == 5 + 2 * 2  # each bad batch: both halves of each split score
  byte = {p: i for i, p in enumerate(good)}
  for row in found:
    assert row['class_id'] == byte[row['path']] % 4 and row['class'] == 'abcd'[row['class_id']]
    assert len(row['top_k']) == 2 and row['probability'] == pytest.approx(0.775)


def test_a_server_that_is_down_stops_the_run(tmp_path):
  write_folder(str(tmp_path), ['a.jpg'], [], [])

  def down(images):
    raise client.ClientError('cannot reach TF Serving REST API')

  with pytest.raises(client.ClientError, match='cannot reach'):
    batch.score_folder(str(tmp_path), down, open(os.devnull, 'w'), 3, None, 4)


def test_the_command_scores_a_folder_as_the_pipeline_rows_it(exported, tmp_path, capsys):
  import tensorflow as tf
  _, loaded, export_dir = exported
  folder = str(tmp_path / 'new')
  expected = fixtures.make_infer_folder(folder, fixtures.NUMBERED_CLASSES)
  output = os.path.join(folder, 'preds.jsonl')  # inside the folder: not scored itself
  assert client.main([folder, '--model-dir', export_dir, '--output', output,
                      '--batch-size', '2', '--top-k', '3']) == 0
  printed = capsys.readouterr().out
  found = {r['path']: r for r in map(json.loads, open(output))}
  assert set(found) == expected['good']
  paths = sorted(found)
  probabilities = loaded.signatures['serving_default'](image_bytes=tf.constant(
      [open(os.path.join(folder, p), 'rb').read() for p in paths]))['probabilities'].numpy()
  for path, p in zip(paths, probabilities):
    want = rows.prediction_row(path, p, 3, fixtures.NUMBERED_CLASSES)
    assert found[path]['class'] == want['class']
    np.testing.assert_allclose(found[path]['probability'], want['probability'], atol=1e-5)
  with open(os.path.join(folder, 'preds.skipped.txt')) as f:
    skipped = dict(line.rstrip('\n').split('\t') for line in f)
  assert set(skipped) == set(expected['bad'])
  for path, reason in expected['bad'].items():
    assert re.search(reason, skipped[path]), (path, skipped[path])
  assert f'scored {len(expected["good"])} images in ' in printed and output in printed
  assert f'skipped {len(expected["bad"])} files' in printed


def test_folder_mode_errors_are_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    client.parse_args(['a', 'b', '--model-dir', 'm', '--output', 'o.jsonl'])
  assert exit_info.value.code == 2
  assert 'with --output, give one folder' in capsys.readouterr().err
  code = client.main([str(tmp_path / 'missing'), '--model-dir', str(tmp_path),
                      '--output', str(tmp_path / 'o.jsonl')])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1 and len(err) == 1 and 'is not a folder' in err[0]
