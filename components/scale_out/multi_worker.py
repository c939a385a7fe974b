"""Multi-worker training on localhost: the Trainer's run_fn in N processes, one TF_CONFIG each.

This is what Vertex AI Training and Kubeflow do with a worker pool of N
replicas: every replica runs the same `run_fn` with a `TF_CONFIG` naming the
whole cluster and its own index, `components.trainer.strategy()` picks
MultiWorkerMirroredStrategy, and worker 0 is the chief (the cluster has no
`chief` task), the one that writes the model, the history and the export.
Every worker reads the same train files; tf.data's automatic sharding gives
each its share of every global batch.

    python -m components.scale_out.multi_worker FN_ARGS_JSON   # one worker (TF_CONFIG set)

`train()` starts the N workers on 127.0.0.1 with free ports and waits for
them (components/scale_out/cluster.py: a dead worker fails the run, never
hangs it). With one worker, no TF_CONFIG is set: the Trainer as it runs in
the pipeline.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from components.scale_out import cluster
from components.scale_out import fn_args as fn_args_io

HOST = '127.0.0.1'
TIMEOUT_S = 1800  # a run that takes longer is stopped: smoke-size training takes about a minute
GRACE_S = 60  # after a worker fails, how long the others get to fail by themselves


def cluster_spec(ports: Sequence[int], host: str = HOST) -> Dict[str, List[str]]:
  return {'worker': [f'{host}:{port}' for port in ports]}


def tf_config(spec: Dict[str, List[str]], index: int) -> str:
  """The TF_CONFIG of worker `index`, as a cluster manager sets it."""
  if not 0 <= index < len(spec['worker']):
    raise ValueError(f'worker index {index} is not in a cluster of {len(spec["worker"])}')
  return json.dumps({'cluster': spec, 'task': {'type': 'worker', 'index': index}})


def members(fn_args_path: str, ports: Sequence[int],
            env: Optional[Dict[str, str]] = None) -> List[cluster.Member]:
  """One Member per port; a single worker runs without TF_CONFIG (the default strategy)."""
  argv = (sys.executable, '-m', __name__, fn_args_path)
  env = env or {}
  if len(ports) == 1:
    return [cluster.Member('worker-0', argv, env, drop_env=('TF_CONFIG',))]
  spec = cluster_spec(ports)
  return [cluster.Member(f'worker-{i}', argv, {**env, 'TF_CONFIG': tf_config(spec, i)})
          for i in range(len(ports))]


def start(fn_args, workers: int, work_dir: str) -> cluster.Group:
  """Starts the workers; `Group.wait` (or leaving its `with` block) ends them."""
  if workers < 1:
    raise ValueError(f'workers must be at least 1, got {workers}')
  os.makedirs(work_dir, exist_ok=True)
  path = fn_args_io.write(fn_args, os.path.join(work_dir, 'fn_args.json'))
  tmp = os.path.join(work_dir, 'tmp')  # the workers' temp files, non-chief outputs included
  os.makedirs(tmp, exist_ok=True)
  return cluster.Group('multi-worker training',
                       members(path, cluster.free_ports(workers), {'TMPDIR': tmp}), work_dir)


def train(fn_args, workers: int, work_dir: str, timeout_s: float = TIMEOUT_S,
          grace_s: float = GRACE_S) -> List[cluster.Outcome]:
  """Runs `run_fn` in `workers` processes; raises cluster.ClusterFailed if any fails."""
  with start(fn_args, workers, work_dir) as group:
    return group.wait(timeout_s, grace_s)


def main(argv: Sequence[str]) -> Any:
  if len(argv) != 2:
    raise SystemExit(f'usage: python -m {__name__} FN_ARGS_JSON')
  from components import trainer  # pylint: disable=g-import-not-at-top  (TensorFlow: workers only)
  return trainer.run_fn(fn_args_io.read(argv[1]))


if __name__ == '__main__':
  main(sys.argv)
