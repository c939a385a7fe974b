"""The runner turns TensorFlow's oneDNN kernels on for x86-64, unless the user chose."""

import os
import platform
import subprocess
import sys

import pytest

from tfx_pipeline import onednn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('machine', ['x86_64', 'AMD64'])
def test_on_by_default_on_x86_64(machine):
  environ = {}
  assert onednn.apply(environ, machine) == '1'
  assert environ == {onednn.ENV: '1'}
  assert onednn.describe(environ) == 'TensorFlow oneDNN kernels: on (TF_ENABLE_ONEDNN_OPTS=1)'


@pytest.mark.parametrize('value, state', [('0', 'off'), ('1', 'on')])
def test_the_users_setting_wins(value, state):
  environ = {onednn.ENV: value}
  assert onednn.apply(environ, 'x86_64') is None
  assert environ == {onednn.ENV: value}
  assert onednn.describe(environ) == f'TensorFlow oneDNN kernels: {state} (TF_ENABLE_ONEDNN_OPTS={value})'


def test_other_machines_keep_tensorflows_choice():
  environ = {}
  assert onednn.apply(environ, 'aarch64') is None
  assert environ == {}
  assert onednn.describe(environ) == "TensorFlow oneDNN kernels: TensorFlow's default for this CPU"


def test_the_runner_sets_it_before_tensorflow_is_imported():
  script = ('import os, sys\n'
            'import pipeline_runner\n'
            "rc = pipeline_runner.main(['--preset', 'smoke', '--image-dir', '/nonexistent/dir'])\n"
            "print(rc, os.environ.get('TF_ENABLE_ONEDNN_OPTS'), 'tensorflow' in sys.modules)\n")
  env = {k: v for k, v in os.environ.items() if k != onednn.ENV}
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
  expected = onednn.default({}, platform.machine())
  assert result.stdout.split()[-3:] == ['2', str(expected), 'False'], result.stdout + result.stderr
