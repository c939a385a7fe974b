"""Loads a SavedModel the way TF Serving does and replays its warm-up requests.

    python -m components.serving_check.check EXPORT_DIR [--json]

TF Serving does not load a model with TF2's `tf.saved_model.load`. Its C++
loader imports the graph into a session, runs the SaverDef's restore op, then
the init op; `tf.compat.v1.saved_model.loader.load` and `saved_model_cli run`
follow the same path. An export can pass every TF2 check and still fail there
(for example "Could not find variable conv2_bn/beta"). In a fresh graph and
session, this checks that:

1. the model loads with the `serve` tag;
2. both signatures of the serving contract exist with their inputs and outputs;
3. every request in `assets.extra/tf_serving_warmup_requests` answers with one
   row per input, and probabilities that sum to 1. TF Serving replays that
   file while it loads a version, and a failed warm-up fails the load;
4. an empty batch gives empty outputs, on both signatures.

Exit status 0 when every check passes, 1 otherwise. With --json the last
line on stdout is {"ok": ..., "passed": [...], "failure": ...}. Run it in a
process of its own: the executor (components/serving_check/executor.py) runs
it once per oneDNN setting, which must be chosen before TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Dict, List, Optional

import numpy as np

from components import features

SERVE_TAG = 'serve'
# signature -> its one input, as the serving contract names them
CONTRACT = {features.SERVING_SIGNATURE: features.SERVING_INPUT,
            features.EXAMPLE_SIGNATURE: features.EXAMPLE_INPUT}
OUTPUTS = (features.PROBABILITIES, features.CLASS_IDS, features.CLASS_NAMES)
WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
SUM_TOLERANCE = 1e-3


class CheckFailed(Exception):
  """The model fails a check; the message says which and how."""


@dataclasses.dataclass
class Result:
  ok: bool
  passed: List[str]  # the checks that passed, in order
  failure: Optional[str] = None  # the first check that failed, and its error

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))


def error_line(error: Exception) -> str:
  """The informative line of a TF error (not 'Graph execution error:' or node names)."""
  text = getattr(error, 'message', None) or str(error)
  for line in text.splitlines():
    line = line.strip()
    if line and not line.startswith(('Graph execution error', 'Detected at node', 'File "',
                                     '[[', 'Traceback')):
      return line[:400]
  return text.strip()[:400] or error.__class__.__name__


def check_outputs(outputs: Dict[str, np.ndarray], batch_size: int, where: str) -> None:
  """One row per input in every output; probabilities finite and summing to 1."""
  for name in OUTPUTS:
    if outputs[name].shape[:1] != (batch_size,):
      raise CheckFailed(f'{where}: {name} has shape {outputs[name].shape}, '
                        f'expected {batch_size} row(s)')
  probabilities = outputs[features.PROBABILITIES]
  if batch_size and not (np.all(np.isfinite(probabilities)) and np.allclose(
      probabilities.sum(axis=1), 1.0, atol=SUM_TOLERANCE)):
    raise CheckFailed(f'{where}: probabilities are not finite rows that sum to 1')


def read_warmup(export_dir: str) -> list:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
  path = os.path.join(export_dir, WARMUP_FILE)
  if not tf.io.gfile.exists(path):
    raise CheckFailed(f'no warm-up file at {WARMUP_FILE}')
  return [prediction_log_pb2.PredictionLog.FromString(record.numpy())
          for record in tf.data.TFRecordDataset(path)]


def check_export(export_dir: str, passed: List[str]) -> None:
  """Runs the checks in a fresh graph and session, appending each that passes to `passed`.

  Raises CheckFailed at the first failure.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  logs = read_warmup(export_dir)  # eagerly, before the TF1 graph takes over
  with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
    try:
      meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], export_dir)
    except Exception as e:  # pylint: disable=broad-except  # any load error fails the check
      raise CheckFailed(f'the TF1 loader cannot load it: {error_line(e)}') from None
    passed.append('loads in a TF1 session (restore op, init op)')

    signatures = meta_graph.signature_def
    for name, input_name in CONTRACT.items():
      if name not in signatures:
        raise CheckFailed(f'signature {name} is missing; it has {sorted(signatures)}')
      if set(signatures[name].inputs) != {input_name} or \
          not set(OUTPUTS) <= set(signatures[name].outputs):
        raise CheckFailed(f'signature {name} takes {sorted(signatures[name].inputs)} and '
                          f'returns {sorted(signatures[name].outputs)}; the contract is '
                          f'{input_name} -> {list(OUTPUTS)}')
    passed.append(f'has signatures {", ".join(CONTRACT)}')

    def run(signature: str, values: np.ndarray, where: str) -> None:
      signature_def = signatures[signature]
      feed = {signature_def.inputs[CONTRACT[signature]].name: values}
      fetch = {name: signature_def.outputs[name].name for name in OUTPUTS}
      try:
        outputs = session.run(fetch, feed)
      except tf.errors.OpError as e:
        raise CheckFailed(f'{where}: {error_line(e)}') from None
      check_outputs(outputs, len(values), where)

    for i, log in enumerate(logs):
      request = log.predict_log.request
      signature = request.model_spec.signature_name or features.SERVING_SIGNATURE
      if signature not in CONTRACT or set(request.inputs) != {CONTRACT[signature]}:
        raise CheckFailed(f'warm-up request {i + 1} asks for {signature} with '
                          f'{sorted(request.inputs)}')
      values = tf.make_ndarray(request.inputs[CONTRACT[signature]])
      run(signature, values, f'warm-up request {i + 1} ({signature}, batch {len(values)})')
    passed.append(f'answers its {len(logs)} warm-up requests '
                  f'({", ".join(sorted({l.predict_log.request.model_spec.signature_name for l in logs}))})')

    for signature in CONTRACT:
      run(signature, np.array([], dtype=object), f'an empty batch on {signature}')
    passed.append('answers an empty batch with empty outputs on both signatures')


def check(export_dir: str) -> Result:
  passed: List[str] = []
  try:
    check_export(export_dir, passed)
  except CheckFailed as e:
    return Result(ok=False, passed=passed, failure=str(e))
  return Result(ok=True, passed=passed)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('export_dir', help='a SavedModel directory (a pushed version)')
  parser.add_argument('--json', action='store_true', help='end with one JSON line')
  args = parser.parse_args(argv)
  result = check(args.export_dir)
  if args.json:
    print(result.to_json())
  else:
    for line in result.passed:
      print(f'ok: {line}')
    if result.failure:
      print(f'FAILED: {result.failure}')
  return 0 if result.ok else 1


if __name__ == '__main__':
  sys.exit(main())
