"""Batch inference throughput: images/s of the `--infer-dir` branch with 1 and 2 Beam workers.

    .venv/bin/python benchmarks/bulk_inference.py                  # 10,000 images
    .venv/bin/python benchmarks/bulk_inference.py --model-dir outputs/serving

Generates a folder of `--images` CIFAR-sized (32x32) JPEGs and PNGs in
sub-folders, plus `--bad` files the check must skip (text, truncated JPEGs),
then runs the pipeline's batch-inference branch on it once per `--workers`
value, on the LocalDagRunner with the runner's own Beam arguments
(`--beam-workers N`: the DirectRunner, multi_processing when N > 1):

    FolderExampleGen -> Importer (the model) -> BulkInferrer (+ predictions.jsonl)

The model is `--model-dir` (a pushed version, or a serving dir: its highest
version) or, by default, the `cifar` AlexNet at the cpu preset's default
hyperparameters with untrained weights, exported as the Trainer exports it:
speed does not depend on the weights. Times are per component, from MLMD's
timestamps, so they include Beam's start-up. The standalone route
(`python -m serving.client DIR --output`, batches of 64, one process) runs on
the same folder for comparison. Prints a Markdown table; docs/serving.md
records it.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import shutil
import sys
import tempfile
import time
from typing import Dict

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'tests'))  # fixtures.py: the generated images

import numpy as np  # noqa: E402

BRANCH = ('FolderExampleGen', 'BulkInferrer')


def make_folder(root: str, images: int, bad: int, seed: int = 0) -> None:
  """`images` good 32x32 files in 20 sub-folders (one in 4 a PNG), and `bad` bad ones."""
  import fixtures  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  for i in range(images):
    fmt = 'png' if i % 4 == 3 else 'jpg'
    path = os.path.join(root, f'batch-{i % 20:02d}', f'{i:05d}.{fmt}')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(fixtures.encode(fixtures.synthetic_image(i % 10, rng), fmt))
  for i in range(bad):
    path = os.path.join(root, 'bad', f'{i:03d}.jpg')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    jpeg = fixtures.encode(fixtures.synthetic_image(0, rng, 64), 'jpg')
    with open(path, 'wb') as f:
      f.write(jpeg[:len(jpeg) // 2] if i % 2 else b'not an image')


def export_untrained(work: str) -> str:
  """The cpu preset's `cifar` AlexNet (untrained), exported with a real transform graph."""
  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft
  import fixtures
  from components import serving, transform
  from models import alexnet
  from tfx_pipeline import config
  from tuning.search_space import search_space
  tree = fixtures.make_image_tree(os.path.join(work, 'tree'), per_class=10)
  paths = sorted(glob.glob(os.path.join(tree, 'train', '*', '*')))
  names = sorted(os.listdir(os.path.join(tree, 'train')))
  out = transform.analyze_images([open(p, 'rb').read() for p in paths],
                                 [names.index(os.path.basename(os.path.dirname(p))) for p in paths],
                                 32, os.path.join(work, 'transform'))
  model = alexnet.build_model(search_space(config.cpu().tune, 'cifar'), 'cifar', 32, 10,
                              conv_widths=config.cpu().model.conv_widths)
  return serving.export(model, tft.TFTransformOutput(out), names, os.path.join(work, 'model'))


def model_artifact_dir(work: str, version_dir: str) -> str:
  """A Model artifact's layout (<uri>/Format-Serving) around a version directory."""
  uri = os.path.join(work, 'model-artifact')
  os.makedirs(uri, exist_ok=True)
  link = os.path.join(uri, 'Format-Serving')
  if not os.path.exists(link):
    os.symlink(os.path.abspath(version_dir), link)
  return uri


def run_branch(folder: str, model_uri: str, root: str, workers: int) -> Dict[str, float]:
  """The branch on the LocalDagRunner; {component: seconds} from MLMD, and rows written."""
  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx
  from components.bulk_inference.example_gen import FolderExampleGen
  from components.bulk_inference.inferrer import bulk_inferrer
  from tfx_pipeline import config as config_lib
  from tfx_pipeline import run_summary
  cfg = dataclasses.replace(config_lib.smoke(), pipeline_root=root, beam_workers=workers)
  gen = FolderExampleGen(folder, cfg.data.max_image_pixels, 'benchmark').with_id(BRANCH[0])
  importer = tfx.dsl.Importer(source_uri=model_uri,
                              artifact_type=tfx.types.standard_artifacts.Model
                              ).with_id('ModelImporter')
  inferrer = bulk_inferrer(gen.outputs['examples'], importer.outputs['result'],
                           None).with_id(BRANCH[1])
  pipeline = tfx.dsl.Pipeline(
      pipeline_name='bulk-inference-benchmark', pipeline_root=root,
      components=[gen, importer, inferrer], enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata
      .sqlite_metadata_connection_config(cfg.metadata_path),
      beam_pipeline_args=list(cfg.beam_pipeline_args))
  started = time.time()
  tfx.orchestration.LocalDagRunner().run(pipeline)
  wall = time.time() - started
  runs = {r.node_id: r for r in run_summary.component_runs(
      cfg.metadata_path, 'bulk-inference-benchmark', started)}
  predictions, = glob.glob(os.path.join(root, BRANCH[1], 'inference_result', '*',
                                        'predictions.jsonl'))
  with open(predictions) as f:
    scored = sum(1 for _ in f)
  return {**{n: runs[n].seconds for n in BRANCH}, 'wall': wall, 'scored': scored}


def run_client(folder: str, version_dir: str, batch_size: int) -> Dict[str, float]:
  # pylint: disable=g-import-not-at-top
  from serving import batch, client
  predict = client.load_local(version_dir)
  with open(os.devnull, 'w') as out:
    result = batch.score_folder(folder, predict, out, 3, None, batch_size)
  return {'seconds': result.seconds, 'scored': result.scored}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--images', type=int, default=10_000)
  parser.add_argument('--bad', type=int, default=20, help='bad files mixed in (skipped)')
  parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--model-dir', help='a pushed version or serving dir (default: an '
                                          'untrained cpu-preset AlexNet)')
  parser.add_argument('--client-batch-size', type=int, default=64)
  parser.add_argument('--work-dir', help='kept; default: a temp dir, deleted')
  args = parser.parse_args(argv)
  work = args.work_dir or tempfile.mkdtemp(prefix='bulk-inference-')
  os.makedirs(work, exist_ok=True)
  try:
    folder = os.path.join(work, 'images')
    if not os.path.isdir(folder):
      t = time.time()
      make_folder(folder, args.images, args.bad)
      print(f'generated {args.images} images + {args.bad} bad files in {time.time() - t:.0f} s',
            flush=True)
    if args.model_dir:
      from serving import client  # pylint: disable=g-import-not-at-top
      version_dir = client.resolve_model_dir(args.model_dir)
    else:
      version_dir = export_untrained(work)
    model_uri = model_artifact_dir(work, version_dir)
    rows = []
    for workers in args.workers:
      root = os.path.join(work, f'root-{workers}')
      shutil.rmtree(root, ignore_errors=True)
      r = run_branch(folder, model_uri, root, workers)
      assert r['scored'] == args.images, r
      both = r[BRANCH[0]] + r[BRANCH[1]]
      rows.append(f'| pipeline branch, {workers} Beam worker{"s" if workers > 1 else ""} | '
                  f'{r[BRANCH[0]]:.0f} s ({args.images / r[BRANCH[0]]:.0f}/s) | '
                  f'{r[BRANCH[1]]:.0f} s ({args.images / r[BRANCH[1]]:.0f}/s) | '
                  f'{both:.0f} s | **{args.images / both:.0f}** |')
      print(rows[-1], flush=True)
    c = run_client(folder, version_dir, args.client_batch_size)
    assert c['scored'] == args.images, c
    rows.append(f'| `serving.client DIR --output`, batches of {args.client_batch_size} | - | - | '
                f'{c["seconds"]:.0f} s | **{args.images / c["seconds"]:.0f}** |')
    print(rows[-1], flush=True)
    print(f'\n{args.images} images (+{args.bad} bad files skipped), model {version_dir}\n')
    print('| route | FolderExampleGen (check) | BulkInferrer (score + rows) | total | images/s |')
    print('|---|---|---|---|---|')
    print('\n'.join(rows))
  finally:
    if not args.work_dir:
      shutil.rmtree(work, ignore_errors=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
