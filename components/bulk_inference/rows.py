"""The predictions file's rows, and the folder walk that finds the images to score.

Both routes that score a folder write the same JSON Lines file, one row per
image: the pipeline's BulkInferrer branch (`--infer-dir`, inferrer.py) and
the standalone client (`python -m serving.client DIR --output preds.jsonl`,
serving/batch.py). A row is

    {"path": "cats/001.jpg", "class": "cat", "class_id": 3, "probability": 0.912,
     "top_k": [{"class": "cat", "class_id": 3, "probability": 0.912}, ...]}

with `path` relative to the folder given, '/'-separated. Files that could
not be scored are not rows: each route lists them by path with the reason.

Pure Python and numpy: no TensorFlow import, so the client starts fast.
"""

from __future__ import annotations

import json
import os
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

PREDICTIONS_FILE = 'predictions.jsonl'
SKIPPED_FILE = 'skipped.txt'  # one `path<TAB>reason` line per file that was not scored
DECIMALS = 6  # probabilities in the file


def top_k(probabilities: np.ndarray, k: int) -> List[int]:
  """Class ids of the k largest probabilities, largest first (ties: lower id first)."""
  order = np.argsort(-np.asarray(probabilities), kind='stable')
  return [int(i) for i in order[:k]]


def class_name(class_id: int, class_names: Optional[Sequence[str]]) -> str:
  if class_names is not None and 0 <= class_id < len(class_names):
    return str(class_names[class_id])
  return f'class {class_id}'


def prediction_row(path: str, probabilities: np.ndarray, k: int,
                   class_names: Optional[Sequence[str]] = None) -> dict:
  """One image's row: its path, the top class and probability, and the top k."""
  ranked = [{'class': class_name(i, class_names), 'class_id': i,
             'probability': round(float(probabilities[i]), DECIMALS)}
            for i in top_k(probabilities, k)]
  return {'path': path, 'class': ranked[0]['class'], 'class_id': ranked[0]['class_id'],
          'probability': ranked[0]['probability'], 'top_k': ranked}


def jsonl_line(row: dict) -> str:
  return json.dumps(row, ensure_ascii=False) + '\n'


def skipped_line(path: str, reason: str) -> str:
  """`path<TAB>reason`, on one line whatever the reason holds."""
  return f'{path}\t{" ".join(str(reason).split())}\n'


def _is_hidden(name: str) -> bool:
  return name.startswith('.') or name == '__MACOSX'  # .git, .DS_Store, zip debris


def _inside(root_real: str, path: str) -> bool:
  real = os.path.realpath(path)
  return real == root_real or real.startswith(root_real + os.sep)


def walk_folder(root: str) -> Tuple[List[str], List[Tuple[str, str]]]:
  """(files to score, [(path, reason)] left out) of a folder of any layout.

  Every regular file under `root`, in sub-folders too, is a candidate,
  whatever its name: whether it is an image is for the decoder to say, and a
  file that is not is skipped and listed, never dropped. Hidden entries
  (`.git`, `.DS_Store`) are passed over. Symlinks that resolve outside the
  folder are not followed; they are listed. Paths are relative to `root`,
  '/'-separated, sorted.
  """
  root = os.path.abspath(os.path.expanduser(root))
  root_real = os.path.realpath(root)
  files: List[str] = []
  left_out: List[Tuple[str, str]] = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
    rel_dir = os.path.relpath(dirpath, root)
    rel_dir = '' if rel_dir == '.' else rel_dir.replace(os.sep, '/') + '/'
    kept = []
    for name in sorted(dirnames):
      path = os.path.join(dirpath, name)
      if _is_hidden(name):
        continue
      if os.path.islink(path):
        left_out.append((rel_dir + name, 'symlink (folders are not followed)'))
      else:
        kept.append(name)
    dirnames[:] = kept
    for name in sorted(filenames):
      path = os.path.join(dirpath, name)
      if _is_hidden(name):
        continue
      if os.path.islink(path) and not _inside(root_real, path):
        left_out.append((rel_dir + name, 'symlink out of the folder'))
      elif not os.path.isfile(path):
        left_out.append((rel_dir + name, 'not a regular file'))
      else:
        files.append(rel_dir + name)
  return sorted(files), sorted(left_out)


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
  """`items` in consecutive slices of at most `size`."""
  for start in range(0, len(items), size):
    yield items[start:start + size]
