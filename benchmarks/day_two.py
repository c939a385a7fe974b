"""Day two, measured: spans of the CIFAR-10 archive run in turn, against one cold run.

    .venv/bin/python benchmarks/day_two.py --archive ~/data/cifar10-jpeg \\
        --work ~/day2 --preset cpu                       # about 3 h on 2 cores

The archive (`<archive>/train/<class>/*.jpg`, 50,000 images) is cut into
spans by a stable hash of each file's path (default 40,000 + 5,000 + 5,000;
hard links, so no image is copied). The pipeline then runs once per span on
`<work>/spans/span-{SPAN}` (each span moved there when its day comes) with one
pipeline root: span 1 is a first run,
spans 2 and 3 are day-two runs (newest span ingested, window of all spans,
the finished search reused, warm start). Last, one cold run on the whole
archive with a root of its own.

Per run it records the wall time, each component's time and the Evaluator's
eval accuracy. The eval sets agree: ImageExampleGen hashes an image's path
inside its tree, not its span, so the last day-two window's eval split and
the cold run's are the same images. The last line is JSON; the goal is
day-two wall time <= 20% of the cold run's, and eval accuracy within 0.3
points of it. Figures and the command go in docs/training.md.

Each run's console output is kept in `<work>/logs/` (the Trainer's epoch lines
among it). `--keep-states` also copies the pipeline root and serving dir after
every day but the last to `<work>/after-span-N/`: a variant of the next day
(another warm schedule, say) then starts from exactly the same state and model,
by running the pipeline on a copy of it with the next span in place.

`--spans 400,50,50 --preset smoke` checks the script itself in minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tfx_pipeline import run_summary  # noqa: E402  pylint: disable=g-import-not-at-top

ACCURACY = re.compile(r'^Evaluator: [^\n]*?eval accuracy ([01]\.\d+)', re.M)


def span_of(relpath: str, sizes: Sequence[int]) -> int:
  """1-based span of a file: a stable hash of its path, cut by the span sizes' shares."""
  point = int(hashlib.sha256(relpath.encode()).hexdigest()[:12], 16) / 16 ** 12
  total, edge = sum(sizes), 0.0
  for span, size in enumerate(sizes, 1):
    edge += size / total
    if point < edge:
      return span
  return len(sizes)


def make_spans(archive: str, spans_dir: str, sizes: Sequence[int]) -> Dict[int, int]:
  """Hard-links the archive's images into spans_dir/span-N/...; returns images per span."""
  counts: Dict[int, int] = {}
  files = sorted(os.path.relpath(os.path.join(d, f), archive)
                 for d, _, names in os.walk(archive) for f in names)
  total = sum(sizes)
  if total < len(files):  # a smaller benchmark: a stable sample of the archive
    files = sorted(files, key=lambda p: hashlib.sha256(f'sample:{p}'.encode()).hexdigest())
    files = files[:total]
  for relpath in files:
    span = span_of(relpath, sizes)
    target = os.path.join(spans_dir, f'span-{span}', relpath)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.exists(target):
      try:
        os.link(os.path.join(archive, relpath), target)
      except OSError:
        shutil.copyfile(os.path.join(archive, relpath), target)
    counts[span] = counts.get(span, 0) + 1
  return counts


def keep_state(work: str, span: int) -> str:
  """Copies <work>/root and <work>/serving to <work>/after-span-<span>/; returns that folder.

  Real copies, not links: the metadata store is rewritten in place by the next run. The
  copy's metadata still names the artifacts by their paths under <work>/root (written
  once, never changed), so that folder must stay."""
  state = os.path.join(work, f'after-span-{span}')
  for name in ('root', 'serving'):
    if os.path.isdir(os.path.join(work, name)):
      shutil.copytree(os.path.join(work, name), os.path.join(state, name), symlinks=True)
  return state


def run(image_dir: str, root: str, serving: str, preset: str, extra: List[str],
        log: str) -> dict:
  cmd = [sys.executable, os.path.join(REPO, 'pipeline_runner.py'), '--preset', preset,
         '--image-dir', image_dir, '--pipeline-root', root, '--serving-dir', serving, *extra]
  print('$', ' '.join(cmd), flush=True)
  since = time.time()
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  wall = time.time() - since
  os.makedirs(os.path.dirname(log), exist_ok=True)
  with open(log, 'w', encoding='utf-8') as f:
    f.write(result.stdout)
  print(f'console output: {log}', flush=True)
  if result.returncode:
    print(result.stdout[-3000:], result.stderr[-3000:], sep='\n')
    raise SystemExit(f'run failed ({result.returncode}): {image_dir}')
  components = {r.node_id: round(r.seconds, 1) for r in run_summary.component_runs(
      os.path.join(root, 'metadata.sqlite'), 'cifar10-alexnet', since)}
  match = ACCURACY.search(result.stdout)
  paths = [line for line in result.stdout.splitlines()
           if line.startswith(('Span:', 'Training window:', 'Tuner:', 'Trainer:', 'Data gate:'))]
  row = {'image_dir': image_dir, 'wall_s': round(wall, 1), 'components_s': components,
         'eval_accuracy': float(match.group(1)) if match else None, 'path': paths}
  print(json.dumps(row, indent=1), flush=True)
  return row


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--archive', required=True, help='<archive>/train/<class>/*.jpg')
  p.add_argument('--work', required=True, help='spans, pipeline roots, serving dirs')
  p.add_argument('--preset', default='cpu')
  p.add_argument('--spans', default='40000,5000,5000', help='images per span')
  p.add_argument('--skip-cold', action='store_true', help='day-two runs only')
  p.add_argument('--keep-states', action='store_true',
                 help='copy the root and serving dir after each day to <work>/after-span-N')
  p.add_argument('extra', nargs='*', help='more pipeline_runner flags (after --)')
  args = p.parse_args(argv)
  sizes = [int(n) for n in args.spans.split(',')]
  work = os.path.abspath(os.path.expanduser(args.work))
  archive = os.path.abspath(os.path.expanduser(args.archive))
  pending, spans = os.path.join(work, 'pending'), os.path.join(work, 'spans')
  if os.path.isdir(spans):
    raise SystemExit(f'{spans} exists: use a fresh --work directory')
  counts = make_spans(archive, pending, sizes)
  print(f'spans: {dict(sorted(counts.items()))}', flush=True)

  days = []
  os.makedirs(spans)
  for span in sorted(counts):
    # The runner ingests the newest span: they arrive one at a time.
    os.rename(os.path.join(pending, f'span-{span}'), os.path.join(spans, f'span-{span}'))
    days.append(run(os.path.join(spans, 'span-{SPAN}'), os.path.join(work, 'root'),
                    os.path.join(work, 'serving'), args.preset, args.extra,
                    os.path.join(work, 'logs', f'span-{span}.txt')))
    if args.keep_states and span != max(counts):
      print(f'state after span {span}: {keep_state(work, span)}', flush=True)
  cold = None
  if not args.skip_cold:
    union = os.path.join(work, 'all')
    if not os.path.isdir(union):  # the same files as the spans, in one tree
      for span in sorted(counts):
        shutil.copytree(os.path.join(spans, f'span-{span}'), union,
                        copy_function=os.link, dirs_exist_ok=True)
    cold = run(union, os.path.join(work, 'cold-root'), os.path.join(work, 'cold-serving'),
               args.preset, args.extra, os.path.join(work, 'logs', 'cold.txt'))
  summary = {'spans': counts, 'days': days, 'cold': cold}
  if cold and len(days) > 1:
    summary['day_two_wall_share'] = [round(d['wall_s'] / cold['wall_s'], 3) for d in days[1:]]
    if days[-1]['eval_accuracy'] is not None and cold['eval_accuracy'] is not None:
      summary['accuracy_gap_points'] = round(
          100 * (days[-1]['eval_accuracy'] - cold['eval_accuracy']), 2)
  print(json.dumps(summary))
  return 0


if __name__ == '__main__':
  sys.exit(main())
