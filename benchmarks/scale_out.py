"""Wall time of 1 against 2 Trainer workers, and of 1 against 2 Tuner workers, on smoke-size data.

    .venv/bin/python benchmarks/scale_out.py --out /tmp/scale-out

The script makes a smoke-size tree (tests/fixtures.py: 10 classes x 20
generated JPEG/PNG images), runs the project's ImageExampleGen executor and
Transform analysis on it once, then times, one after the other:

- training: `run_fn` with the smoke preset in 1 process (no TF_CONFIG, the
  pipeline's Trainer) and in 2 processes under MultiWorkerMirroredStrategy
  (components/scale_out/multi_worker.py);
- tuning: the smoke preset's Hyperband search with keras-tuner's chief and 1
  worker, then the chief and 2 workers (components/scale_out/parallel_tuning.py),
  each in a fresh tuner directory.

Each time is the whole group's wall time, process start-up (Python,
TensorFlow, TFX imports) included, as a cluster job would pay it. The last
line is JSON: seconds per (what, workers).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'tests'))  # fixtures.py: the generated image tree

import fixtures  # noqa: E402
from components.scale_out import fn_args as fn_args_io  # noqa: E402
from components.scale_out import multi_worker, parallel_tuning  # noqa: E402
from tfx_pipeline import config as config_lib  # noqa: E402
from tfx_pipeline import pipeline as pipeline_lib  # noqa: E402

IMAGES_PER_CLASS = 20  # 200 images: the size of README's smoke tree


def make_artifacts(out: str):
  """(examples uri, transform graph dir) of the generated tree, made by the project's code."""
  import glob  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from components import features, transform  # pylint: disable=g-import-not-at-top
  from components.example_gen import executor  # pylint: disable=g-import-not-at-top
  tree = fixtures.make_image_tree(os.path.join(out, 'tree'), per_class=IMAGES_PER_CLASS)
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(out, 'examples')
  data = config_lib.DataConfig(image_dir=tree, eval_percent=10)
  executor.Executor().Do({}, {executor.EXAMPLES_KEY: [examples]},
                         {executor.DATA_CONFIG_KEY: json.dumps(dataclasses.asdict(data))})
  files = glob.glob(os.path.join(examples.uri, 'Split-train', '*.gz'))
  records = [tf.train.Example.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]
  blobs = [e.features.feature[features.IMAGE_KEY].bytes_list.value[0] for e in records]
  labels = [e.features.feature[features.LABEL_KEY].int64_list.value[0] for e in records]
  return examples.uri, transform.analyze_images(blobs, labels, 32, os.path.join(out, 'transform'))


def fn_args_for(run_dir: str, examples_uri: str, graph: str):
  cfg = dataclasses.replace(config_lib.smoke(), pipeline_root=os.path.join(run_dir, 'root'))
  return fn_args_io.from_dict({
      'working_dir': os.path.join(run_dir, 'work'),
      'train_files': [os.path.join(examples_uri, 'Split-train', '*')],
      'eval_files': [os.path.join(examples_uri, 'Split-eval', '*')],
      'transform_graph_path': graph,
      'serving_model_dir': os.path.join(run_dir, 'serving'),
      'model_run_dir': os.path.join(run_dir, 'model_run'),
      'base_model': None, 'hyperparameters': None,
      'custom_config': json.loads(json.dumps(pipeline_lib.module_config(cfg, 'benchmark')))})


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True, help='a new folder for the data and the runs')
  parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--what', nargs='+', choices=['train', 'tune'], default=['train', 'tune'])
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  examples_uri, graph = make_artifacts(args.out)
  seconds = {}
  for what in args.what:
    for workers in args.workers:
      run = os.path.join(args.out, f'{what}-{workers}')
      fn_args = fn_args_for(run, examples_uri, graph)
      start = time.monotonic()
      if what == 'train':
        multi_worker.train(fn_args, workers, os.path.join(run, 'processes'))
      else:
        result = parallel_tuning.search(fn_args, workers, os.path.join(run, 'processes'))
        print(f'tune, {workers} worker(s): trials per worker '
              f'{ {k: len(v) for k, v in result.trials.items()} }', flush=True)
      seconds[f'{what}-{workers}'] = round(time.monotonic() - start, 1)
      print(f'{what}, {workers} worker(s): {seconds[f"{what}-{workers}"]:.0f} s', flush=True)
  print(json.dumps({'seconds': seconds, 'load_average': os.getloadavg(),
                    'cores': os.cpu_count()}))


if __name__ == '__main__':
  main()
