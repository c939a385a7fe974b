"""The tests that build, export or call a model, run again under the other oneDNN setting.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it is imported, and its
default depends on the CPU: on with AVX-512 VNNI/BF16 (e.g. AMD Zen 5), off on
AVX2-only hosts. oneDNN swaps in other kernels (with oneDNN, a Conv2D given an
empty batch returned a wrongly shaped tensor), so a suite that passes under
one setting says little about the other. This test starts a fresh pytest with
the setting this process does not have, on the modules below, so every host
runs them under both. components/serving_check runs both settings itself.
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_TESTS = (
    'tests/test_alexnet.py',
    'tests/test_transform.py',
    'tests/test_data.py',
    'tests/test_serving.py',
    'tests/test_serving_load.py',  # 8 threads on one session: oneDNN's kernels too
    'tests/test_client.py',
    'tests/test_module_chain.py::test_tuner_to_trainer_to_export_chain',
)


def onednn_on_here() -> bool:
  """Whether this process's TensorFlow runs oneDNN kernels (env var or the CPU's default)."""
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  return bool(_pywrap_util_port.IsMklEnabled())


@pytest.mark.slow
def test_model_tests_pass_under_the_other_onednn_setting():
  other = '0' if onednn_on_here() else '1'
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=other, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run(
      [sys.executable, '-m', 'pytest', *MODEL_TESTS, '-q', '-p', 'no:cacheprovider',
       '-o', 'addopts=-ra'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
  assert result.returncode == 0, (f'TF_ENABLE_ONEDNN_OPTS={other}:\n'
                                  + result.stdout[-4000:] + result.stderr[-2000:])
  assert ' passed' in result.stdout and 'skipped' not in result.stdout, result.stdout[-1000:]
