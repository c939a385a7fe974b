"""A whole folder against a pushed model, without the pipeline: JSON Lines, in bounded batches.

    python -m serving.client DIR --model-dir outputs/serving --output preds.jsonl

writes the rows that the pipeline's `--infer-dir` branch writes
(components/bulk_inference/rows.py), one per image, with the image's path
relative to DIR, and lists the files it could not score, with the reason, in
`preds.skipped.txt` (and the first few on the console). DIR may hold any
layout and any number of files: only the file list is held in memory, and
images are read and sent `--batch-size` at a time (the rows are written as
each batch returns), with a progress bar on a terminal. Works against a
local SavedModel and TF Serving's REST and gRPC APIs alike.

A file that is not a JPEG or PNG is skipped before any request. A file the
model refuses (undecodable, or its header declaring more than the model's
pixel limit) fails its whole batch, as TF Serving does; the batch is then
split in halves until each refusal is pinned on one file, so the other
images of the batch are still scored. Any other error (a server down) stops
the run: it is not the images' fault.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Callable, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from components.bulk_inference import rows
from serving import client

Predict = Callable[[Sequence[bytes]], client.Prediction]
SHOWN_SKIPPED = 10  # skipped files named on the console (all are in the .skipped.txt)


@dataclasses.dataclass
class FolderResult:
  scored: int
  skipped: List[Tuple[str, str]]  # (path, reason)
  seconds: float
  batches: int  # requests that scored images (refused halves not counted)


def skipped_path(output: str) -> str:
  """preds.jsonl -> preds.skipped.txt"""
  return os.path.splitext(output)[0] + '.skipped.txt'


def read_candidate(root: str, relpath: str) -> bytes:
  """The file's bytes if it is a JPEG or PNG; ValueError with the reason otherwise."""
  try:
    with open(os.path.join(root, relpath), 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ValueError(f'cannot read it: {e.strerror or e}') from e
  if not (data.startswith(client.JPEG_MAGIC) or data.startswith(client.PNG_MAGIC)):
    raise ValueError('not a JPEG or PNG file')
  return data


def score_batch(predict: Predict, items: Sequence[Tuple[str, bytes]]
                ) -> Tuple[List[Tuple[str, np.ndarray]], List[Tuple[str, str]], int]:
  """([(path, probabilities)], [(path, reason)], requests that scored) for one batch.

  A refused batch is split in halves, recursively: n images with r bad ones
  cost about 2 r log2(n) extra requests, never one per image.
  """
  try:
    prediction = predict([data for _, data in items])
  except client.RefusedError as e:
    if len(items) == 1:
      return [], [(items[0][0], str(e))], 0
    half = len(items) // 2
    first, second = score_batch(predict, items[:half]), score_batch(predict, items[half:])
    return first[0] + second[0], first[1] + second[1], first[2] + second[2]
  return [(path, p) for (path, _), p in zip(items, prediction.probabilities)], [], 1


def score_folder(root: str, predict: Predict, out: TextIO, k: int,
                 class_names: Optional[Sequence[str]], batch_size: int,
                 progress=None, exclude: Sequence[str] = ()) -> FolderResult:
  """Scores every file under `root` but `exclude` (relative paths), writing a row per
  image to `out` batch by batch."""
  started = time.perf_counter()
  files, skipped = rows.walk_folder(root)
  files = [f for f in files if f not in set(exclude)]
  scored = requests = 0
  for paths in rows.batches(files, batch_size):
    items = []
    for path in paths:
      try:
        items.append((path, read_candidate(root, path)))
      except ValueError as e:
        skipped.append((path, str(e)))
    found, refused, used = score_batch(predict, items) if items else ([], [], 0)
    for path, probabilities in found:
      out.write(rows.jsonl_line(rows.prediction_row(path, probabilities, k, class_names)))
    out.flush()
    scored, requests = scored + len(found), requests + used
    skipped.extend(refused)
    if progress is not None:
      progress.update(len(paths))
  return FolderResult(scored, sorted(skipped), time.perf_counter() - started, requests)


def summary_text(result: FolderResult, output: str) -> str:
  rate = result.scored / result.seconds if result.seconds else 0.0
  lines = [f'scored {result.scored} images in {result.seconds:.1f} s ({rate:.0f} images/s, '
           f'{result.batches} requests): {output}']
  if result.skipped:
    lines.append(f'skipped {len(result.skipped)} files (all in {skipped_path(output)}):')
    lines.extend(f'  {path}: {reason}' for path, reason in result.skipped[:SHOWN_SKIPPED])
    if len(result.skipped) > SHOWN_SKIPPED:
      lines.append(f'  ... and {len(result.skipped) - SHOWN_SKIPPED} more')
  return '\n'.join(lines)


def run(args: argparse.Namespace) -> str:
  """`--output`: scores the folder `args.images[0]`; returns the summary to print."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  root = args.images[0]
  if not os.path.isdir(root):
    raise client.ClientError(f'{root} is not a folder (with --output, give one folder)')
  predict, class_names = client.target(args)
  # Our own output, written inside the folder, is not an image to score.
  exclude = [os.path.relpath(os.path.abspath(p), os.path.abspath(root)).replace(os.sep, '/')
             for p in (args.output, skipped_path(args.output))]
  total = len([f for f in rows.walk_folder(root)[0] if f not in exclude])
  with open(args.output, 'w') as out, tqdm(total=total, unit='img', file=sys.stderr,
                                           disable=None) as progress:
    result = score_folder(root, predict, out, args.top_k, class_names, args.batch_size,
                          progress, exclude)
  with open(skipped_path(args.output), 'w') as f:
    f.writelines(rows.skipped_line(path, reason) for path, reason in result.skipped)
  return summary_text(result, args.output)
