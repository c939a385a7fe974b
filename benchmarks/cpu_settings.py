"""CPU settings for training, measured: oneDNN, TF's thread pools, bfloat16.

    .venv/bin/python benchmarks/cpu_settings.py                  # about 15 minutes on 2 cores
    .venv/bin/python benchmarks/cpu_settings.py --settings default,onednn_on,bf16

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, at import, and fixes its
thread pools before the first op, so each setting trains in a process of its
own. The processes start together and then take turns: each round, every
setting trains one epoch of benchmarks/train_throughput.py's project pipeline
(TFRecords -> TFT graph -> cache -> augmentation -> the `cpu` preset's AlexNet,
batch 128) while the others wait on a pipe, so the host's drift hits every
setting alike. Each setting's first epoch (tracing, cache) is a warm-up.

Per setting it prints the median images/s and the cores it kept busy (process
CPU time / wall time over its timed epochs: 2.0 is both cores of this
machine). The last line is JSON. Record figures in docs/training.md with the
CPU flags this prints: they differ between hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 3


class Setting(NamedTuple):
  env: Dict[str, str]  # set before TensorFlow is imported
  intra: int = 0  # tf.config.threading; 0: TensorFlow's default
  inter: int = 0
  policy: str = ''  # Keras mixed-precision policy; '': float32


SETTINGS = {
    'default': Setting({}),
    'onednn_on': Setting({'TF_ENABLE_ONEDNN_OPTS': '1'}),
    'onednn_off': Setting({'TF_ENABLE_ONEDNN_OPTS': '0'}),
    'intra2_inter1': Setting({}, intra=2, inter=1),
    'intra1_inter2': Setting({}, intra=1, inter=2),
    'bf16': Setting({}, policy='mixed_bfloat16'),  # only where the CPU has AVX512_BF16
}


def cpu_flags() -> List[str]:
  """The AVX-512 flags of this host (empty: AVX2 only)."""
  try:
    with open('/proc/cpuinfo') as f:
      return sorted(set(re.findall(r'avx512[a-z_0-9]*', f.read())))
  except OSError:
    return []


def default_settings(flags: List[str]) -> List[str]:
  names = ['default', 'onednn_on', 'onednn_off', 'intra2_inter1', 'intra1_inter2']
  return names + (['bf16'] if 'avx512_bf16' in flags else [])


def cores_busy(cpu_seconds: float, wall_seconds: float) -> float:
  return cpu_seconds / wall_seconds if wall_seconds > 0 else 0.0


def child(name: str) -> None:
  """One setting: build, warm up, then one timed epoch per line read from stdin."""
  setting = SETTINGS[name]
  sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if setting.intra:
    tf.config.threading.set_intra_op_parallelism_threads(setting.intra)
  if setting.inter:
    tf.config.threading.set_inter_op_parallelism_threads(setting.inter)
  if setting.policy:
    import keras  # pylint: disable=g-import-not-at-top
    keras.mixed_precision.set_global_policy(setting.policy)
  import tempfile  # pylint: disable=g-import-not-at-top
  import train_throughput as tt  # pylint: disable=g-import-not-at-top
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  images, labels = tt.make_images(tt.NUM_IMAGES)
  with tempfile.TemporaryDirectory() as workdir:
    dataset, tft_output = tt.project_dataset(workdir, images, labels, 128)
    model = tt.build_model(tt.NUM_IMAGES // 128 * (ROUNDS + 2), tft_output)
    tt.epoch_images_per_second(model, dataset)  # warm-up
    print(json.dumps({'ready': name, 'onednn': bool(_pywrap_util_port.IsMklEnabled())}),
          flush=True)
    for _ in sys.stdin:
      cpu, wall = time.process_time(), time.perf_counter()
      rate = tt.epoch_images_per_second(model, dataset)
      print(json.dumps({'images_per_s': rate,
                        'cores': cores_busy(time.process_time() - cpu,
                                            time.perf_counter() - wall)}), flush=True)
  os._exit(0)  # tf.data's and Beam's threads can keep a finished interpreter from exiting


def start(name: str) -> subprocess.Popen:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', **SETTINGS[name].env)
  return subprocess.Popen([sys.executable, os.path.abspath(__file__), '--child', name],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def read_json(proc: subprocess.Popen) -> dict:
  """The child's next JSON line (libraries may print other lines first)."""
  for line in proc.stdout:
    if line.startswith('{'):
      return json.loads(line)
  raise RuntimeError(f'the child exited with status {proc.wait()}')


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--settings', help=f'comma-separated, of {", ".join(SETTINGS)}')
  p.add_argument('--rounds', type=int, default=ROUNDS)
  p.add_argument('--child', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    child(args.child)
    return {}
  flags = cpu_flags()
  names = args.settings.split(',') if args.settings else default_settings(flags)
  unknown = [n for n in names if n not in SETTINGS]
  if unknown:
    p.error(f'unknown settings {unknown}; choose from {", ".join(SETTINGS)}')
  print(f'host: {os.cpu_count()} cores; AVX-512 flags: {" ".join(flags) or "none (AVX2 only)"}')
  procs = {}
  onednn = {}
  for name in names:  # one at a time: building and warming up is the heavy part
    procs[name] = start(name)
    onednn[name] = read_json(procs[name])['onednn']
    print(f'{name}: ready (oneDNN {"on" if onednn[name] else "off"})', flush=True)
  rates: Dict[str, List[float]] = {n: [] for n in names}
  cores: Dict[str, List[float]] = {n: [] for n in names}
  for r in range(args.rounds):
    for name, proc in procs.items():
      proc.stdin.write('go\n')
      proc.stdin.flush()
      epoch = read_json(proc)
      rates[name].append(epoch['images_per_s'])
      cores[name].append(epoch['cores'])
      print(f'round {r + 1} {name:14s} {epoch["images_per_s"]:6.0f} img/s, '
            f'{epoch["cores"]:.2f} cores busy', flush=True)
  for proc in procs.values():
    proc.stdin.close()
    try:
      proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
      proc.kill()
  results = {n: {'images_per_s': round(statistics.median(rates[n]), 1),
                 'cores_busy': round(statistics.median(cores[n]), 2),
                 'onednn': onednn[n]} for n in names}
  for n, r in results.items():
    print(f'{n:14s} median {r["images_per_s"]:6.0f} img/s, {r["cores_busy"]:.2f} cores busy, '
          f'oneDNN {"on" if r["onednn"] else "off"}')
  print(json.dumps({'avx512': flags, 'settings': results}))
  return results


if __name__ == '__main__':
  main()
