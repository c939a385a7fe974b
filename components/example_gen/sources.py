"""Image sources for ExampleGen: a class-folder tree, or a tensorflow-datasets dataset.

The folder layout is tfds.ImageFolder's: `ROOT/<split>/<class>/<image>.{jpg,jpeg,png}`,
classes sorted by name across splits. We scan the tree ourselves rather than
through `tfds.ImageFolder(ROOT)` because on a real-world tree that builder
turns every folder into a split or a class (`.git/objects` becomes a class),
follows symlinks anywhere, and keeps empty class folders as labels. The scan
below keeps ImageFolder's conventions (tests/test_sources.py checks that both
agree on a clean tree) and names everything it leaves out.

Split roles: `train` is the training pool; `eval`, `validation`, `val` or
`valid`, if present, is the eval split; `test` is held out and never read.
A tree with a single split of any name is carved into train/eval by a hash of
each image's relative path (see `split_for`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')  # the set tfds.ImageFolder reads
EVAL_SPLIT_NAMES = ('eval', 'validation', 'val', 'valid')
HELD_OUT_SPLIT_NAMES = ('test',)
TRAIN = 'train'
EVAL = 'eval'
OUTPUT_SPLITS = (TRAIN, EVAL)


class SourceError(ValueError):
  """The image source cannot be used; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ImageFile:
  split: str  # source split folder
  label: int  # index into TreeScan.class_names
  relpath: str  # '/'-separated path under the root; also the image id


@dataclasses.dataclass(frozen=True)
class TreeScan:
  root: str
  class_names: Tuple[str, ...]
  files: Tuple[ImageFile, ...]
  ignored: Tuple[Tuple[str, str], ...]  # (relative path, reason)

  @property
  def splits(self) -> Tuple[str, ...]:
    return tuple(sorted({f.split for f in self.files}))


def _is_hidden(name: str) -> bool:
  return name.startswith('.') or name == '__MACOSX'  # .git, .DS_Store, zip debris


def _inside(root_real: str, path: str) -> bool:
  real = os.path.realpath(path)
  return real == root_real or real.startswith(root_real + os.sep)


def scan_image_tree(root: str) -> TreeScan:
  """Lists the images of a class-folder tree; raises SourceError if unusable.

  Left out, each with its reason: hidden entries (`.git`, `.DS_Store`,
  `__MACOSX`), stray files outside class folders, folders nested inside a
  class, files without an image extension, symlinks that resolve outside the
  tree, and class folders with no images. Decoding is checked later, by the
  executor, for every file kept here.
  """
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise SourceError(f'--image-dir {root} does not exist or is not a directory')
  root_real = os.path.realpath(root)
  ignored: List[Tuple[str, str]] = []
  found: Dict[str, Dict[str, List[str]]] = {}  # split -> class -> relpaths

  def entries(rel: str) -> Iterator[Tuple[str, str, str]]:
    """Yields (name, relpath, kind) of usable entries; records the rest."""
    for name in sorted(os.listdir(os.path.join(root, rel))):
      child = f'{rel}/{name}' if rel else name
      path = os.path.join(root, child)
      if _is_hidden(name):
        ignored.append((child, 'hidden'))
      elif os.path.islink(path) and not _inside(root_real, path):
        ignored.append((child, 'symlink out of the tree'))
      elif os.path.isdir(path):
        yield name, child, 'dir'
      elif os.path.isfile(path):
        yield name, child, 'file'
      else:
        ignored.append((child, 'not a regular file'))

  for split, split_rel, kind in entries(''):
    if kind != 'dir':
      ignored.append((split_rel, 'stray file at the top level'))
      continue
    for cls, cls_rel, kind in entries(split_rel):
      if kind != 'dir':
        ignored.append((cls_rel, 'stray file outside a class folder'))
        continue
      images = []
      for name, rel, kind in entries(cls_rel):
        if kind == 'dir':
          ignored.append((rel, 'folder nested inside a class'))
        elif not name.lower().endswith(IMAGE_EXTENSIONS):
          ignored.append((rel, 'not a .jpg/.jpeg/.png file'))
        else:
          images.append(rel)
      if images:
        found.setdefault(split, {})[cls] = images
      else:
        ignored.append((cls_rel, 'empty class folder'))

  if not found:
    flat = [s for s, _, k in entries('') if k == 'dir' and any(
        n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(os.path.join(root, s)))]
    hint = (f' It looks like ROOT/<class>/<image> ({", ".join(flat[:3])}...); put the class '
            f'folders under {os.path.join(root, "train")}/.') if flat else ''
    raise SourceError(f'no images found in {root}: expected {root}/<split>/<class>/'
                      f'<image>.jpg|jpeg|png.{hint}')
  class_names = tuple(sorted({c for classes in found.values() for c in classes}))
  index = {c: i for i, c in enumerate(class_names)}
  files = tuple(
      ImageFile(split=split, label=index[cls], relpath=rel)
      for split in sorted(found) for cls in sorted(found[split])
      for rel in found[split][cls])
  return TreeScan(root=root, class_names=class_names, files=files,
                  ignored=tuple(ignored))


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  """Which source split feeds train, which (if any) feeds eval."""
  train: str
  eval: Optional[str]  # None: carve eval out of `train` by hash
  unused: Tuple[str, ...]


def plan_splits(splits: Sequence[str]) -> SplitPlan:
  splits = sorted(splits)
  if TRAIN in splits:
    train = TRAIN
  elif len([s for s in splits if s not in HELD_OUT_SPLIT_NAMES]) == 1:
    train = next(s for s in splits if s not in HELD_OUT_SPLIT_NAMES)
  else:
    raise SourceError(f'cannot tell which split trains among {splits}: name one "train"')
  eval_split = next((s for s in EVAL_SPLIT_NAMES if s in splits and s != train), None)
  unused = tuple(s for s in splits if s not in (train, eval_split))
  return SplitPlan(train=train, eval=eval_split, unused=unused)


def split_for(image_id: str, eval_percent: int, seed: int = 0) -> str:
  """Deterministic train/eval assignment from a stable id (same id, same split)."""
  digest = hashlib.sha256(f'{seed}/{image_id}'.encode()).digest()
  return EVAL if int.from_bytes(digest[:8], 'big') % 100 < eval_percent else TRAIN


def output_split(source_split: str, image_id: str, plan: SplitPlan,
                 eval_percent: int, seed: int) -> Optional[str]:
  """Output split of one image, or None when its source split is unused."""
  if source_split == plan.train:
    return TRAIN if plan.eval else split_for(image_id, eval_percent, seed)
  if source_split == plan.eval:
    return EVAL
  return None


def hash_order(files: Sequence[ImageFile], seed: int = 0) -> List[ImageFile]:
  """`files` in a stable pseudo-random order (by a hash of each path)."""
  return sorted(files, key=lambda f: hashlib.sha256(f'{seed}/{f.relpath}'.encode()).digest())


def cap_per_split(files: Sequence[ImageFile], limit: Optional[int],
                  seed: int = 0) -> List[ImageFile]:
  """At most `limit` files per source split, a hash-ordered (so stable) sample."""
  if limit is None:
    return list(files)
  by_split: Dict[str, List[ImageFile]] = {}
  for f in hash_order(files, seed):
    by_split.setdefault(f.split, []).append(f)
  return [f for split_files in by_split.values() for f in split_files[:limit]]


def fingerprint_tree(root: str) -> str:
  """A cheap content fingerprint (paths, sizes, mtimes) so caching sees new data."""
  h = hashlib.sha256()
  for dirpath, dirnames, filenames in os.walk(os.path.expanduser(root)):
    dirnames.sort()
    for name in sorted(filenames):
      path = os.path.join(dirpath, name)
      try:
        st = os.stat(path)
      except OSError:
        continue
      h.update(f'{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
  return h.hexdigest()[:16]


# ---------------------------------------------------------------- spans

# TFX's span placeholder: `--image-dir 'DIR/span-{SPAN}'` names a folder per
# span, each a class-folder tree. `{SPAN}` matches an unpadded number;
# `{SPAN:2}` a zero-padded one of that width (TFX's rules).
SPAN_TOKEN = '{SPAN'
IMAGES_GLOB = '*/*/*'  # <split>/<class>/<image> under a tree root


def has_spans(image_dir: str) -> bool:
  return SPAN_TOKEN in image_dir


def span_layout(image_dir: str) -> Tuple[str, str]:
  """'DIR/span-{SPAN}' -> ('DIR', 'span-{SPAN}'): TFX's input base and the pattern under it.

  The base is the longest leading path without the placeholder; a plain tree
  is its own base, with an empty pattern.
  """
  image_dir = os.path.abspath(os.path.expanduser(image_dir))
  if not has_spans(image_dir):
    return image_dir, ''
  parts = image_dir.split(os.sep)
  first = next(i for i, part in enumerate(parts) if SPAN_TOKEN in part)
  return os.sep.join(parts[:first]) or os.sep, os.sep.join(parts[first:])


def latest_span(image_dir: str) -> Tuple[int, str]:
  """(span, tree root) of the newest span, by TFX's own span resolution (span 0: no spans).

  Raises SourceError when the pattern matches nothing. A plain tree imports
  nothing: the runner's preflight calls this before it points Keras' and
  matplotlib's home dirs into the pipeline root, and TFX imports both.
  """
  base, pattern = span_layout(image_dir)
  if not pattern:
    return 0, base
  # pylint: disable=g-import-not-at-top
  from tfx.components.example_gen import utils as example_gen_utils
  from tfx.proto import example_gen_pb2
  split = example_gen_pb2.Input.Split(name='images', pattern=f'{pattern}/{IMAGES_GLOB}')
  try:
    _, span, _ = example_gen_utils.calculate_splits_fingerprint_span_and_version(base, [split])
  except ValueError as e:
    raise SourceError(f'--image-dir {image_dir}: no span folder with images matches '
                      f'({e}); expected e.g. {base}/span-1/train/<class>/*.jpg') from None
  # TFX rewrote the pattern with the span it chose.
  return span, os.path.join(base, split.pattern[:-len(IMAGES_GLOB) - 1])


def span_roots(image_dir: str) -> List[Tuple[int, str]]:
  """Every (span, tree root) on disk that the pattern matches, oldest first."""
  import re  # pylint: disable=g-import-not-at-top
  base, pattern = span_layout(image_dir)
  if not pattern:
    return [(0, base)]
  regex = re.escape(pattern)
  regex = re.sub(r'\\\{SPAN(?::(\d+))?\\\}', lambda m: r'(\d{%s})' % m.group(1)
                 if m.group(1) else r'(\d+)', regex)
  found = []
  depth = pattern.count(os.sep) + 1  # how deep the span folders sit under the base
  for dirpath, dirnames, _ in os.walk(base):
    rel = os.path.relpath(dirpath, base)
    if rel != '.' and rel.count(os.sep) + 1 >= depth:
      dirnames[:] = []  # nothing below a span folder is another span
    match = re.fullmatch(regex, rel)
    if match:
      found.append((int(match.group(1)), dirpath))
  return sorted(found)


def class_change(before: Sequence[str], after: Sequence[str]) -> str:
  """'' when the class names agree; else what was added and dropped, in words."""
  added = sorted(set(after) - set(before))
  dropped = sorted(set(before) - set(after))
  parts = ([f'adds {added}'] if added else []) + ([f'drops {dropped}'] if dropped else [])
  return ' and '.join(parts)


def check_span_classes(image_dir: str, class_names: Sequence[str]) -> None:
  """Raises SourceError when the newest span's classes differ from the span before it.

  Labels are indices into the sorted class names, so a span that adds or
  drops a class would silently relabel every other one.
  """
  roots = span_roots(image_dir)
  if len(roots) < 2:
    return
  (prev_span, prev_root), (span, root) = roots[-2], roots[-1]
  previous = scan_image_tree(prev_root).class_names
  change = class_change(previous, class_names)
  if change:
    raise SourceError(
        f'span {span} ({root}) {change} against span {prev_span}: its classes are '
        f'{list(class_names)}, span {prev_span} has {list(previous)}; every span must '
        'hold the same class folders')


def image_id_prefix(image_dir: str, root: str) -> str:
  """'' for a plain tree; 'span-3/' for a span, so ids stay unique across spans."""
  base, pattern = span_layout(image_dir)
  return '' if not pattern else os.path.relpath(root, base).replace(os.sep, '/') + '/'


def read_file_in_tree(root: str, relpath: str) -> bytes:
  """Reads ROOT/relpath, refusing anything that resolves outside ROOT."""
  path = os.path.join(root, relpath)
  if not _inside(os.path.realpath(root), path):
    raise SourceError(f'{relpath} resolves outside {root}')
  with open(path, 'rb') as f:
    return f.read()


# ---------------------------------------------------------------- tfds datasets

TFDS_DOWNLOAD_HINT = (
    'Use the offline route instead: --image-dir DIR with DIR/train/<class>/*.jpg, '
    'e.g. the CIFAR-10 JPEG export unpacked with '
    '"tar -xzf cifar10-jpeg-train.tar.gz -C ~/data" and then '
    '"--image-dir ~/data/cifar10-jpeg".')


def tfds_class_names(name: str, data_dir: Optional[str]) -> Tuple[str, ...]:
  """Label names of a tfds dataset, downloading and preparing it first if needed.

  Some builders (cifar10 among them) learn their names from the downloaded
  files, so the names are read after preparation.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  builder.download_and_prepare()
  return tuple(builder.info.features['label'].names)


def _download_hosts(builder) -> List[str]:
  """Hosts a tfds builder downloads from: its module's *_URL constants, plus GCS."""
  import sys  # pylint: disable=g-import-not-at-top
  import urllib.parse  # pylint: disable=g-import-not-at-top
  module = sys.modules.get(type(builder).__module__)
  urls = [v for k, v in vars(module).items() if k.endswith('URL') and isinstance(v, str)
          and v.startswith('http')] if module else []
  hosts = [urllib.parse.urlparse(u).hostname for u in urls]
  return sorted({h for h in hosts if h}) or ['storage.googleapis.com']


def check_tfds_reachable(name: str, data_dir: Optional[str], timeout_s: float = 5.0) -> None:
  """Raises SourceError at once when tfds would need a download that cannot happen."""
  import socket  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return
  for host in _download_hosts(builder):
    try:
      socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError as e:
      raise SourceError(
          f'tfds dataset {name!r} is not prepared in {builder.data_dir} and its download '
          f'host {host} is unreachable ({e.__class__.__name__}: {e}). '
          f'{TFDS_DOWNLOAD_HINT}') from e


def tfds_slices(split: str, shards: int) -> List[str]:
  """Splits one tfds split into `shards` sub-splits that Beam workers read in parallel."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return list(tfds.even_splits(split, n=shards))


def read_tfds(name: str, split: str, data_dir: Optional[str]) -> Iterator[Tuple[str, bytes, int]]:
  """Yields (id, encoded image bytes, label) of one tfds (sub-)split, undecoded."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  builder.download_and_prepare()
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  for i, ex in enumerate(tfds.as_numpy(ds)):
    image_id = ex['id'].decode() if 'id' in ex else f'{split}/{i}'
    yield image_id, bytes(ex['image']), int(ex['label'])
