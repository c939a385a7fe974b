"""TensorFlow's oneDNN kernels, on by default for the runner on x86-64 CPUs.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it is imported, and
chooses by CPU when it is unset: on for CPUs with AVX-512 VNNI/BF16 (e.g. AMD
Zen 5), off on AVX2-only ones. On our AVX2-only AMD EPYC host the oneDNN
kernels train the `cpu` preset's network 1.8x faster in the training loop
(benchmarks/cpu_settings.py) and about 1.7x in the pipeline's Trainer, and the
forward pass and gradients agree with the default kernels to about 1e-6
(docs/training.md, "CPU settings"). So the runner sets the variable to 1 on
x86-64 before TensorFlow is imported, unless the user set it (`=0` keeps
TensorFlow's default kernels). Other machines (e.g. ARM) keep TensorFlow's
own choice: nothing was measured there.

The Beam workers, multi-worker trainers and ServingCheck's subprocesses
inherit the variable; ServingCheck runs both settings in any case, since TF
Serving builds exist with and without oneDNN.
"""

from __future__ import annotations

import os
import platform
from typing import MutableMapping, Optional

ENV = 'TF_ENABLE_ONEDNN_OPTS'
X86_64 = ('x86_64', 'amd64')


def default(environ: MutableMapping[str, str], machine: str) -> Optional[str]:
  """The value the runner sets, or None to leave the choice to the user or TensorFlow."""
  if ENV in environ or machine.lower() not in X86_64:
    return None
  return '1'


def apply(environ: MutableMapping[str, str] = os.environ,
          machine: Optional[str] = None) -> Optional[str]:
  """Sets the default in `environ` (before TensorFlow is imported); returns what it set."""
  value = default(environ, platform.machine() if machine is None else machine)
  if value is not None:
    environ[ENV] = value
  return value


def describe(environ: MutableMapping[str, str] = os.environ) -> str:
  """One phrase for the run's header: whether the oneDNN kernels are asked for, and by whom."""
  value = environ.get(ENV)
  if value is None:
    return "TensorFlow oneDNN kernels: TensorFlow's default for this CPU"
  state = 'off' if value.strip().lower() in ('0', 'false', 'off') else 'on'
  return f'TensorFlow oneDNN kernels: {state} ({ENV}={value})'
