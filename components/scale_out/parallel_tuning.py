"""A parallel search on localhost: keras-tuner's chief (the oracle) and N tuner workers.

Every process runs the Tuner's own `tuner_fn` and calls `search()`, as TFX's
cloud Tuner has its replicas do. keras-tuner reads three variables: the
process whose `KERASTUNER_TUNER_ID` is `chief` serves the oracle at
`KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT` and trains nothing; every other
one asks it for trials and reports their scores. The search's directory is
shared (the same `tuner_dir` and project), as it must be on a cluster.

    KERASTUNER_TUNER_ID=chief|tuner<i> KERASTUNER_ORACLE_IP=... KERASTUNER_ORACLE_PORT=... \\
        python -m components.scale_out.parallel_tuning FN_ARGS_JSON OUT_DIR

The chief's `search()` returns once every worker has finished; it then writes
what TFX's Tuner writes (best_hyperparameters.txt for the Trainer, and the
tuner results) under OUT_DIR. Each worker writes the trials it ran to
`OUT_DIR/<id>.trials.json`. `search()` below starts them all, waits
(components/scale_out/cluster.py: a dead process fails the search, never
hangs it), then deletes the trials' weight checkpoints: only then is no
worker writing them any more.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import socket
import sys
import time
from typing import Any, Dict, List, Sequence

from components.scale_out import cluster
from components.scale_out import fn_args as fn_args_io

HOST = '127.0.0.1'
CHIEF = 'chief'
TIMEOUT_S = 3600  # a search that takes longer is stopped: the smoke search takes minutes
GRACE_S = 60  # after a process fails, how long the others get to fail by themselves
BEST_DIR = 'best_hyperparameters'  # under OUT_DIR, as TFX's Tuner output artifacts
RESULTS_DIR = 'tuner_results'
TRIALS_SUFFIX = '.trials.json'


@dataclasses.dataclass(frozen=True)
class SearchResult:
  outcomes: List[cluster.Outcome]
  best_hyperparameters: Dict[str, Any]  # the config TFX hands the Trainer (FnArgs.hyperparameters)
  trials: Dict[str, List[str]]  # worker id -> the trial ids it ran
  project_dir: str
  dropped: List[str]  # the trial checkpoints deleted after the search


def tuner_ids(workers: int) -> List[str]:
  """The chief, then one id per worker (keras-tuner treats any id containing 'chief' as it)."""
  if workers < 1:
    raise ValueError(f'a parallel search needs at least 1 worker, got {workers}')
  return [CHIEF] + [f'tuner{i}' for i in range(workers)]


def tuner_env(tuner_id: str, port: int, host: str = HOST) -> Dict[str, str]:
  return {'KERASTUNER_TUNER_ID': tuner_id, 'KERASTUNER_ORACLE_IP': host,
          'KERASTUNER_ORACLE_PORT': str(port)}


def worker_fn_args(fn_args):
  """The workers' arguments: `--retune` is the chief's decision alone.

  Each `tuner_fn` with retune set would start a generation of its own; the
  workers join the one the chief chose.
  """
  joined = copy.copy(fn_args)
  joined.custom_config = copy.deepcopy(fn_args.custom_config)
  joined.custom_config['tune']['retune'] = False
  return joined


def wait_for_port(group: cluster.Group, name: str, port: int, timeout_s: float) -> None:
  """Returns once `name` listens on `port`; its failure or the timeout ends the group."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if group.processes[name].poll() is not None:
      group.wait(timeout_s=0, grace_s=0)  # raises ClusterFailed with its log
    with socket.socket() as s:
      if s.connect_ex((HOST, port)) == 0:
        return
    time.sleep(cluster.POLL_S)
  group.wait(timeout_s=0, grace_s=0)


def read_trials(out_dir: str, ids: Sequence[str]) -> Dict[str, List[str]]:
  trials = {}
  for tuner_id in ids:
    with open(os.path.join(out_dir, tuner_id + TRIALS_SUFFIX)) as f:
      trials[tuner_id] = json.load(f)
  return trials


def search(fn_args, workers: int, work_dir: str, timeout_s: float = TIMEOUT_S,
           grace_s: float = GRACE_S) -> SearchResult:
  """Runs the search with a chief and `workers` workers; ClusterFailed if any process fails."""
  from tuning import tuner as tuner_lib  # pylint: disable=g-import-not-at-top  (TensorFlow)
  ids = tuner_ids(workers)
  os.makedirs(work_dir, exist_ok=True)
  port = cluster.free_ports(1)[0]
  chief_args = fn_args_io.write(fn_args, os.path.join(work_dir, 'fn_args-chief.json'))
  joined_args = fn_args_io.write(worker_fn_args(fn_args),
                                 os.path.join(work_dir, 'fn_args-worker.json'))
  argv = (sys.executable, '-m', __name__)
  start = time.monotonic()
  with cluster.Group('parallel tuning', [cluster.Member(
      CHIEF, argv + (chief_args, work_dir), tuner_env(CHIEF, port))], work_dir) as group:
    if fn_args.custom_config['tune'].get('retune'):  # the workers join its new generation
      wait_for_port(group, CHIEF, port, timeout_s)
    for tuner_id in ids[1:]:  # otherwise they wait for the oracle by themselves (gRPC)
      group.add(cluster.Member(tuner_id, argv + (joined_args, work_dir),
                               tuner_env(tuner_id, port)), work_dir)
    outcomes = group.wait(timeout_s - (time.monotonic() - start), grace_s)
  tuner_dir = fn_args.custom_config['tuner_dir']
  with open(os.path.join(tuner_dir, tuner_lib.LAST_SEARCH_FILE)) as f:
    project_dir = os.path.join(tuner_dir, json.load(f)['project'])
  with open(os.path.join(work_dir, BEST_DIR, 'best_hyperparameters.txt')) as f:
    best = json.load(f)
  return SearchResult(outcomes, best, read_trials(work_dir, ids[1:]), project_dir,
                      tuner_lib.drop_checkpoints(project_dir))


def _write_tfx_outputs(tuner, out_dir: str) -> None:
  """What TFX's Tuner executor writes, with its own function, into OUT_DIR."""
  from tfx.components.tuner import executor as tfx_tuner  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  best, results = standard_artifacts.HyperParameters(), standard_artifacts.TunerResults()
  best.uri, results.uri = os.path.join(out_dir, BEST_DIR), os.path.join(out_dir, RESULTS_DIR)
  for uri in (best.uri, results.uri):
    os.makedirs(uri, exist_ok=True)
  tfx_tuner.write_best_hyperparameters(
      tuner, {'best_hyperparameters': [best], 'tuner_results': [results]})


def main(argv: Sequence[str]) -> None:
  if len(argv) != 3:
    raise SystemExit(f'usage: KERASTUNER_TUNER_ID=... python -m {__name__} FN_ARGS_JSON OUT_DIR')
  from tuning import tuner as tuner_lib  # pylint: disable=g-import-not-at-top  (TensorFlow)
  fn_args, out_dir = fn_args_io.read(argv[1]), argv[2]
  tuner_id = os.environ['KERASTUNER_TUNER_ID']
  result = tuner_lib.tuner_fn(fn_args)
  tuner = result.tuner
  ran: List[str] = []
  end_trial = tuner.on_trial_end

  def on_trial_end(trial):
    ran.append(trial.trial_id)
    end_trial(trial)

  tuner.on_trial_end = on_trial_end
  tuner.search(**result.fit_kwargs)  # the chief's returns when every worker is done
  if tuner_id == CHIEF:
    _write_tfx_outputs(tuner, out_dir)
  else:
    with open(os.path.join(out_dir, tuner_id + TRIALS_SUFFIX), 'w') as f:
      json.dump(ran, f)
  print(f'{tuner_id}: search done, {len(ran)} trials run here', flush=True)


if __name__ == '__main__':
  main(sys.argv)
