"""ServingCheck's executor: the TF Serving loader check, in separate processes, as an InfraBlessing.

For the candidate model it runs `python -m components.serving_check.check`
twice at once (one process per core on a 2-core machine), with
TF_ENABLE_ONEDNN_OPTS=0 and =1: TF Serving builds exist with and
without oneDNN, and the setting changes which kernels run (an empty batch
broke only under oneDNN). Each run is a fresh process, so nothing of the
pipeline's own TensorFlow state helps the model load, and a hang is cut off
after `timeout_seconds`.

The result is an InfraBlessing artifact, the type TFX's InfraValidator writes:
custom property `blessed` (1 or 0), the marker file INFRA_BLESSED or
INFRA_NOT_BLESSED, and `serving_check.json` with each run's checks. TFX's
Pusher refuses to push a model whose `infra_blessing` is not blessed, so this
component and InfraValidator are interchangeable (docs/serving.md).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components import progress
from components.serving_check import check as check_lib

MODEL_KEY = 'model'
BLESSING_KEY = 'blessing'
TIMEOUT_KEY = 'timeout_seconds'
RESULT_FILE = 'serving_check.json'
ONEDNN_SETTINGS = ('0', '1')  # TF_ENABLE_ONEDNN_OPTS: off, on
STDERR_TAIL = 1500  # characters of a crashed check's stderr kept in the result


def run_check(export_dir: str, onednn: str, timeout: float) -> Dict[str, Any]:
  """One check in its own process; a dict like check.Result plus the setting."""
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL='2')
  command = [sys.executable, '-m', 'components.serving_check.check', export_dir, '--json']
  try:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
  except subprocess.TimeoutExpired:
    return {'onednn': onednn, 'ok': False, 'passed': [],
            'failure': f'no answer within {timeout:.0f} s (load and warm-up replay)'}
  lines = proc.stdout.strip().splitlines()
  try:
    result = json.loads(lines[-1])
  except (IndexError, ValueError):
    result = {'ok': False, 'passed': [],
              'failure': f'the check process exited with status {proc.returncode}: '
                         f'{proc.stderr[-STDERR_TAIL:].strip()}'}
  return {'onednn': onednn, **result}


def run_checks(export_dir: str, timeout: float) -> List[Dict[str, Any]]:
  """Both settings' checks side by side (each waits on its own process), in setting order."""
  with concurrent.futures.ThreadPoolExecutor(len(ONEDNN_SETTINGS)) as pool:
    return list(pool.map(lambda onednn: run_check(export_dir, onednn, timeout),
                         ONEDNN_SETTINGS))


def summary(results: List[Dict[str, Any]]) -> str:
  """One line for the log, MLMD and the run summary."""
  failed = [r for r in results if not r['ok']]
  if failed:
    return '; '.join(f'oneDNN {"on" if r["onednn"] == "1" else "off"}: {r["failure"]}'
                     for r in failed)
  return 'with oneDNN off and on, it ' + '; '.join(results[0]['passed'])


class Executor(base_executor.BaseExecutor):
  """Blesses the model only if TF Serving's loader path loads it and answers."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
    blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
    export_dir = path_utils.serving_model_path(model.uri)
    timeout = float(exec_properties[TIMEOUT_KEY])
    results = run_checks(export_dir, timeout)
    ok = all(r['ok'] for r in results)
    words = summary(results)

    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, RESULT_FILE), 'w') as f:
      json.dump({'export_dir': export_dir, 'ok': ok, 'runs': results}, f, indent=1)
    marker = 'INFRA_BLESSED' if ok else 'INFRA_NOT_BLESSED'  # TFX InfraValidator's markers
    with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), 'w') as f:
      f.write('')
    blessing.set_int_custom_property('blessed', int(ok))
    blessing.set_string_custom_property('serving_check', words)
    progress.LOGGER.info('ServingCheck %s: %s', 'passed' if ok else 'FAILED', words)
