"""Runs the CIFAR-10 AlexNet TFX pipeline on the LocalDagRunner (metadata in SQLite).

    python pipeline_runner.py                       # tfds cifar10, preset by hardware
    python pipeline_runner.py --preset cpu --image-dir ~/data/cifar10-jpeg
    python pipeline_runner.py --preset smoke --image-dir DIR --min-accuracy 0
    python pipeline_runner.py --runner kubeflow-v2 --output pipeline.json   # compile only

Flags become one PipelineConfig (tfx_pipeline/config.py); a bad value stops the
run in one line, with exit status 2, before any component starts. A local run
locks its pipeline root first (tfx_pipeline/root_lock.py): while another run
holds it, this one stops in one line with exit status 75. A local run ends
with a summary and writes <pipeline_root>/report.html (tfx_pipeline/report.py);
a run that failed on a full disk ends with `error: the disk is full: <path> ...`.
The libraries' routine messages go to <pipeline_root>/logs/, not the console
(tfx_pipeline/console.py; --verbose prints them too).
`--runner kubeflow-v2` compiles the same graph to a Vertex AI / KFP v2 job spec
without reading the data (docs/scale_out.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from typing import List, Optional, Tuple

from tfx_pipeline import config as config_lib
from tfx_pipeline import console
from tfx_pipeline import onednn
from tfx_pipeline import root_lock

RUNNERS = ('local', 'kubeflow-v2')


class _OneLineErrors(argparse.ArgumentParser):
  """argparse whose errors are one `error: ...` line (exit 2), like the config's."""

  def error(self, message):
    self.exit(2, f'error: {message} (--help lists the flags)\n')


def build_parser() -> argparse.ArgumentParser:
  """Every flag of the runner; docs and tests parse with this very parser."""
  p = _OneLineErrors(
      allow_abbrev=False,  # a misspelt flag is an error, not a guess
      description='Train a tuned AlexNet on CIFAR-10 (or your image folders) with TFX '
                  'and push a SavedModel for TensorFlow Serving.',
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument('--preset', choices=config_lib.PRESETS, default=None,
                 help='smoke: tiny data, minutes; cpu: 50k images on 2 cores in <= 2 h; '
                      'full: GPU scale (227x227 paper AlexNet). '
                      'Default: full when a GPU is visible, else cpu.')
  data = p.add_argument_group('data')
  data.add_argument('--image-dir', help='class-folder tree DIR/<split>/<class>/*.jpg|png '
                                        'instead of tfds cifar10 (the offline route); '
                                        "'DIR/span-{SPAN}': one tree per span, the newest "
                                        'is ingested each run')
  data.add_argument('--train-spans', type=int,
                    help='train on the last N spans (default 0: all of them)')
  data.add_argument('--schema', help="'curated' (default: tfx_pipeline/schema.pbtxt, with "
                                     "drift checks), 'infer' (SchemaGen), or a schema.pbtxt")
  data.add_argument('--on-drift', choices=config_lib.DRIFT_POLICIES,
                    help='drift against the previous span: stop the run (default) or warn')
  data.add_argument('--tfds-data-dir', help='tensorflow-datasets data_dir')
  data.add_argument('--eval-percent', type=int,
                    help='share of a single-split source carved out as eval')
  data.add_argument('--max-examples', type=int, help='cap on images read per source split')
  data.add_argument('--on-bad-image', choices=config_lib.BAD_IMAGE_POLICIES,
                    help='undecodable images and those over --max-image-pixels: skip and list '
                         'them, or fail the run')
  data.add_argument('--max-image-pixels', type=int,
                    help='largest image, height x width as its header declares, that '
                         'ingestion and the exported model decode; larger ones are refused '
                         f'before decoding (default {config_lib.MAX_IMAGE_PIXELS}: 4096x4096)')
  data.add_argument('--infer-dir',
                    help='a folder of new images (any layout, no labels) that the latest '
                         'blessed model scores after the Evaluator (BulkInferrer); rows go to '
                         'predictions.jsonl under the pipeline root')
  out = p.add_argument_group('outputs')
  out.add_argument('--pipeline-root', help='artifacts, MLMD (SQLite) and logs')
  out.add_argument('--serving-dir', help='where the Pusher writes numbered versions')
  out.add_argument('--pipeline-name', help='MLMD pipeline name')
  out.add_argument('--no-cache', action='store_true', help='re-run every component')
  out.add_argument('--verbose', action='store_true',
                   help="print the libraries' messages too (TensorFlow's C++ logging, TFX and "
                        'Beam INFO, deprecation notices); by default they go to '
                        '<pipeline-root>/logs/run-<UTC time>.log only')
  out.add_argument('--to-node', metavar='COMPONENT',
                   help='partial run: stop after this component (it and what it needs run), '
                        'e.g. Transform to time the data stages alone')
  out.add_argument('--tflite', choices=config_lib.TFLITE_QUANTIZATIONS,
                   help='the TFLite model beside each pushed version (tflite/<version>/): '
                   'float, dynamic (int8 weights; the default), int8 (full-integer, '
                   'calibrated on training images) or off')
  model = p.add_argument_group('model and training')
  model.add_argument('--model-variant', choices=config_lib.VARIANTS,
                     help='cifar: five 3x3 convolutions for 32x32 inputs; paper: '
                          "Krizhevsky 2012's 11x11 stem (227x227 unless --image-size)")
  model.add_argument('--image-size', type=int, help='pixels per side after resize')
  model.add_argument('--patch-whitening', action=argparse.BooleanOptionalAction, default=None,
                     help="a frozen first layer that whitens 2x2 patches, its filters computed "
                          "by Transform over the training split (default: on in the cpu preset)")
  model.add_argument('--conv-widths', type=_widths, metavar='C1,C2,C3,C4,C5',
                     help='channels of the five convolutions before the width multiplier '
                          '(cifar default: 32,64,128,256,256)')
  model.add_argument('--dirac-init', action=argparse.BooleanOptionalAction, default=None,
                     help='start each stride-1 convolution as an identity on its inputs '
                          "(airbench's dirac initialization; default: on in the cpu preset)")
  model.add_argument('--epochs', type=int, help='Trainer epochs')
  model.add_argument('--batch-size', type=int,
                     help='Trainer batch size, global across replicas (Tuner trials too)')
  model.add_argument('--mixed-precision', action=argparse.BooleanOptionalAction, default=None,
                     help='float16 compute (GPU only)')
  model.add_argument('--jit-compile', action=argparse.BooleanOptionalAction, default=None,
                     help='XLA compile the train step')
  model.add_argument('--test-time-flip', action=argparse.BooleanOptionalAction, default=None,
                     help='the served model averages each image with its mirror (default: on)')
  model.add_argument('--ema-momentum', type=float,
                     help='the Trainer keeps an exponential moving average of the weights at '
                          'this momentum (e.g. 0.99: about the last 100 steps), validates and '
                          'exports it; 0 (the presets): off. Tuner trials never average')
  model.add_argument('--bias-lr-scale', type=float,
                     help='the Trainer steps BatchNorm biases at this multiple of the learning '
                          'rate (airbench trains them faster); 1 (the presets): plain SGD. '
                          'Tuner trials keep 1')
  model.add_argument('--alternating-flip', action=argparse.BooleanOptionalAction, default=None,
                     help="the Trainer mirrors each image in every other epoch instead of at "
                          "random (airbench's alternating flip; default: off)")
  tune = p.add_argument_group('tuning')
  tune.add_argument('--tuner', choices=config_lib.TUNER_ALGORITHMS, help='search algorithm')
  tune.add_argument('--trials', type=int, help='trials (random and bayesian search)')
  tune.add_argument('--tuning-epochs', type=int, help='epochs of the longest trial')
  tune.add_argument('--no-tune', action='store_true',
                    help='skip the Tuner: train with the defaults or --hparams-file')
  tune.add_argument('--hparams-file', help='JSON hyperparameters for --no-tune')
  tune.add_argument('--retune', action='store_true',
                    help='search again even though a finished search matches')
  model.add_argument('--from-scratch', action='store_true',
                     help='do not warm-start from the last blessed model')
  model.add_argument('--warm-start-epochs', type=int,
                     help='epochs of a warm-started Trainer (preset value otherwise)')
  model.add_argument('--warm-start-lr-scale', type=float,
                     help="a warm start's peak learning rate, as a share of the tuned one")
  model.add_argument('--warm-start-replay', type=float,
                     help='share of the already-trained-on images each warm epoch replays '
                          '(a fresh sample per epoch; new images every epoch; 1: all)')
  gate = p.add_argument_group('gate')
  gate.add_argument('--min-accuracy', type=float,
                    help='Evaluator floor on eval accuracy (1.01 blocks every model)')
  gate.add_argument('--max-regression', type=float,
                    help='how far overall accuracy may trail the last blessed model')
  gate.add_argument('--max-class-regression', type=float,
                    help="how far any one class's accuracy may trail the last blessed "
                         'model (1.0: off)')
  gate.add_argument('--min-class-accuracy', type=float,
                    help='absolute floor on every class (default 0: off)')
  scale = p.add_argument_group('scale-out')
  scale.add_argument('--beam-workers', type=int,
                     help='Beam DirectRunner workers (multi_processing when > 1)')
  scale.add_argument('--beam-arg', action='append', default=[],
                     help='extra Beam pipeline argument, repeatable; write it with "=", e.g. '
                          '--beam-arg=--runner=DataflowRunner')
  orchestration = p.add_argument_group('orchestration')
  orchestration.add_argument(
      '--runner', choices=RUNNERS, default='local',
      help='local: run here on the LocalDagRunner; kubeflow-v2: only compile a Vertex AI '
           'Pipelines / KFP v2 job spec to --output (reads no data)')
  orchestration.add_argument('--output', default='pipeline.json',
                             help='kubeflow-v2: where to write the job spec (JSON)')
  orchestration.add_argument('--image', default=None,
                             help='kubeflow-v2: container image with this package installed '
                                  '(default gcr.io/$GOOGLE_CLOUD_PROJECT/cifar10-alexnet:latest)')
  return p


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  return build_parser().parse_args(argv)


def gpu_visible() -> bool:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return bool(tf.config.list_physical_devices('GPU'))


def _path(path: Optional[str]) -> Optional[str]:
  """An absolute local path; URLs (gs://...) and None unchanged."""
  if not path or '://' in path:
    return path
  return os.path.abspath(os.path.expanduser(path))


def _widths(text: str) -> Tuple[int, ...]:
  """--conv-widths through config_lib.parse_conv_widths, with a one-line argparse error."""
  try:
    return config_lib.parse_conv_widths(text)
  except ValueError:
    raise argparse.ArgumentTypeError(
        f'expected channel counts separated by commas, got {text!r}') from None


def _set(obj, **changes):
  """dataclasses.replace with only the values that were given."""
  changes = {k: v for k, v in changes.items() if v is not None}
  return dataclasses.replace(obj, **changes) if changes else obj


def build_config(args: argparse.Namespace, preset_name: str) -> config_lib.PipelineConfig:
  """Preset + flags -> a validated PipelineConfig (raises ConfigError)."""
  base = config_lib.preset(preset_name)
  data = _set(base.data, image_dir=_path(args.image_dir), tfds_data_dir=args.tfds_data_dir,
              eval_percent=args.eval_percent, max_examples=args.max_examples,
              on_bad_image=args.on_bad_image, train_spans=args.train_spans,
              max_image_pixels=args.max_image_pixels,
              schema=args.schema if args.schema in (None, 'curated', 'infer')
              else _path(args.schema), on_drift=args.on_drift)
  image_size = args.image_size
  if args.model_variant == 'paper' and image_size is None and base.model.variant != 'paper':
    image_size = 227  # the paper's input size, unless asked otherwise
  model = _set(base.model, variant=args.model_variant, image_size=image_size,
               patch_whitening=args.patch_whitening, conv_widths=args.conv_widths,
               dirac_init=args.dirac_init)
  train = _set(base.train, epochs=args.epochs, batch_size=args.batch_size,
               mixed_precision=args.mixed_precision, jit_compile=args.jit_compile,
               test_time_flip=args.test_time_flip, ema_momentum=args.ema_momentum,
               alternating_flip=args.alternating_flip, bias_lr_scale=args.bias_lr_scale,
               warm_start=False if args.from_scratch else None,
               warm_start_epochs=args.warm_start_epochs,
               warm_start_lr_scale=args.warm_start_lr_scale,
               warm_start_replay=args.warm_start_replay)
  tune = _set(base.tune, algorithm=args.tuner, max_trials=args.trials,
              max_epochs=args.tuning_epochs, hparams_file=args.hparams_file,
              enabled=False if args.no_tune else None, retune=args.retune or None)
  if args.hparams_file and not args.no_tune:
    raise config_lib.ConfigError('--hparams-file needs --no-tune (the Tuner would override it)')
  gate = _set(base.gate, min_accuracy=args.min_accuracy, max_regression=args.max_regression,
              max_class_regression=args.max_class_regression,
              min_class_accuracy=args.min_class_accuracy)
  infer = _set(base.infer, image_dir=_path(args.infer_dir))
  tflite = _set(base.tflite, quantization=args.tflite)
  return _set(base, data=data, model=model, train=train, tune=tune, gate=gate, infer=infer,
              tflite=tflite,
              pipeline_root=_path(args.pipeline_root), serving_dir=_path(args.serving_dir),
              pipeline_name=args.pipeline_name, beam_workers=args.beam_workers,
              beam_args=tuple(args.beam_arg) or None)


def check_compile_flags(args: argparse.Namespace) -> None:
  """--runner kubeflow-v2: --output must be a writable file path, --image an image name."""
  if args.runner != 'kubeflow-v2':
    return
  output = os.path.abspath(os.path.expanduser(args.output))
  if os.path.isdir(output) or not os.path.isdir(os.path.dirname(output)):
    raise config_lib.ConfigError(
        f'--output {args.output!r} must be a file in an existing directory')
  if args.image is not None and (not args.image or '://' in args.image
                                 or any(c.isspace() for c in args.image)):
    raise config_lib.ConfigError(
        f'--image {args.image!r} must be a container image name such as '
        'gcr.io/PROJECT/cifar10-alexnet:latest (no scheme, no spaces)')


def configure(args: argparse.Namespace, preset_name: str) -> config_lib.PipelineConfig:
  """Every check on the flags that reads no data (raises ConfigError)."""
  check_compile_flags(args)
  return build_config(args, preset_name)


def written_dirs(config: config_lib.PipelineConfig) -> List[Tuple[str, str]]:
  """(flag, directory) of every place a local run writes; nothing else is written.

  The tfds route also writes tfds' download and prepared dataset; tfds'
  default is $TFDS_DATA_DIR, else ~/tensorflow_datasets (its constants.DATA_DIR).
  """
  dirs = [('--pipeline-root', config.pipeline_root), ('--serving-dir', config.serving_dir)]
  if not config.data.image_dir:
    default = os.environ.get('TFDS_DATA_DIR', os.path.join('~', 'tensorflow_datasets'))
    dirs.append(('--tfds-data-dir', _path(config.data.tfds_data_dir or default)))
  return dirs


def preflight(config: config_lib.PipelineConfig) -> List[str]:
  """Checks the data sources before any component starts; returns notes to print."""
  notes = source_notes(config)
  if config.infer.image_dir:
    notes.append(infer_note(config.infer.image_dir))
  return notes


def infer_note(infer_dir: str) -> str:
  """`--infer-dir` must be a folder holding files; the note says how many."""
  from components.bulk_inference import rows  # pylint: disable=g-import-not-at-top
  from components.example_gen import sources  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(infer_dir):
    raise sources.SourceError(f'--infer-dir {infer_dir} does not exist or is not a directory')
  files, left_out = rows.walk_folder(infer_dir)
  if not files:
    raise sources.SourceError(f'--infer-dir {infer_dir} holds no files to score')
  return (f'to score: {len(files)} files in {infer_dir}'
          + (f' ({len(left_out)} left out: symlinks or special files)' if left_out else ''))


def source_notes(config: config_lib.PipelineConfig) -> List[str]:
  """Checks the training data source; returns notes to print."""
  from components.example_gen import sources  # pylint: disable=g-import-not-at-top
  data = config.data
  if data.image_dir:
    span, root = sources.latest_span(data.image_dir)
    scan = sources.scan_image_tree(root)
    sources.check_span_classes(data.image_dir, scan.class_names)
    plan = sources.plan_splits(scan.splits)
    if len(scan.class_names) < 2:
      raise sources.SourceError(
          f'{root} has {len(scan.class_names)} class folder(s) with images; '
          'a classifier needs at least 2')
    notes = [f'span {span} ({root}): ' if sources.has_spans(data.image_dir) else '']
    notes = [f'{notes[0]}{len(scan.files)} image files, {len(scan.class_names)} classes, '
             f'splits {list(scan.splits)} (train from {plan.train!r}, eval from '
             f'{plan.eval or "a hash of " + repr(plan.train)})']
    if scan.ignored:
      notes.append(f'{len(scan.ignored)} entries ignored, e.g. '
                   + '; '.join(f'{p} ({r})' for p, r in scan.ignored[:3]))
    return notes
  sources.check_tfds_reachable(data.tfds_name, data.tfds_data_dir)
  return [f'tfds {data.tfds_name} (train split; eval carved by hash, test held out)']


def choose_preset(args: argparse.Namespace) -> str:
  """--preset, else `full` with a local GPU, `cpu` without (and always `cpu` to compile)."""
  if args.preset:
    return args.preset
  if args.runner != 'local':
    print("--preset not given: using 'cpu' (the local GPU says nothing about the cluster)")
    return 'cpu'
  name = 'full' if gpu_visible() else 'cpu'
  print(f'--preset not given: using {name!r} '
        f'({"a GPU is" if name == "full" else "no GPU"} visible)')
  return name


def compile_kubeflow(args: argparse.Namespace, config: config_lib.PipelineConfig) -> int:
  """--runner kubeflow-v2: writes the job spec; reads no data, runs nothing."""
  from tfx_pipeline import kubeflow  # pylint: disable=g-import-not-at-top
  from tfx_pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  image = args.image or kubeflow.default_image()
  pipeline = pipeline_lib.create_pipeline(
      config, fixed_hparams=pipeline_lib.load_fixed_hparams(config),
      enable_cache=not args.no_cache, custom_resolvers=False)
  try:
    job = kubeflow.compile_pipeline(pipeline, image, args.output)
  except ImportError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'compiled {len(kubeflow.task_names(job))} steps for Kubeflow v2 / Vertex AI: '
        f'{os.path.abspath(args.output)}\nimage: {image}\n'
        'note: Kubeflow v2 compiles only TFX\'s built-in resolver strategies, so there the '
        'DataGate checks the schema only (no drift against the previous span) and the '
        'Trainer does not warm-start')
  for note in kubeflow.container_warnings(config, image):
    print(f'warning: {note}', file=sys.stderr)
  return 0


def partial_run(pipeline, to_node: Optional[str]):
  """RunOptions that stop after `to_node` (None: the whole pipeline)."""
  if not to_node:
    return None
  ids = [c.id for c in pipeline.components]
  if to_node not in ids:
    raise config_lib.ConfigError(f'--to-node {to_node!r} is not a component; choose one of '
                                 f'{ids}')
  from tfx.orchestration import pipeline as tfx_pipeline  # pylint: disable=g-import-not-at-top
  return tfx_pipeline.RunOptions(to_nodes=[to_node])


def write_report(config: config_lib.PipelineConfig, started: float) -> Optional[str]:
  """report.html for this run; a broken report warns but never fails the run."""
  from tfx_pipeline import report  # pylint: disable=g-import-not-at-top
  try:
    return report.write_report(config, started)
  except Exception as e:  # pylint: disable=broad-except
    print(f'warning: report.html not written: {e.__class__.__name__}: {e}', file=sys.stderr)
    return None


def keep_writes_inside(pipeline_root: str) -> None:
  """Points the libraries' scratch and config dirs into the pipeline root.

  Keras writes ~/.keras/keras.json on import, matplotlib caches fonts under
  ~/.config, and Beam/TF use the system temp dir; a run must write nothing
  outside its pipeline root and serving dir. Must run before those imports.
  The temp dir starts empty: see clear_scratch_tmp.
  """
  if '://' in pipeline_root:
    return
  clear_scratch_tmp(pipeline_root)
  scratch = os.path.join(pipeline_root, '.scratch')
  for var, sub in (('KERAS_HOME', 'keras'), ('MPLCONFIGDIR', 'matplotlib'), ('TMPDIR', 'tmp')):
    os.makedirs(os.path.join(scratch, sub), exist_ok=True)
    os.environ[var] = os.path.join(scratch, sub)
  import tempfile  # pylint: disable=g-import-not-at-top
  tempfile.tempdir = os.environ['TMPDIR']


def clear_scratch_tmp(pipeline_root: str) -> None:
  """Deletes the run's temp dir: nothing in it outlives a run.

  Every Beam component's executor builds a throwaway sdist of TFX (about
  50 MB) in the temp dir and never deletes it, and autograph leaves its
  generated files there: without this, each run would grow the root by
  about 200 MB. Called when a run starts (after a crash) and when it ends.
  """
  import shutil  # pylint: disable=g-import-not-at-top
  if '://' not in pipeline_root:
    shutil.rmtree(os.path.join(pipeline_root, '.scratch', 'tmp'), ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  onednn.apply()  # before TensorFlow is imported: tfx_pipeline/onednn.py
  console.start(verbose=args.verbose)  # before TensorFlow is imported: tfx_pipeline/console.py
  try:
    return _run(args, argv)
  finally:
    console.stop()


def _run(args: argparse.Namespace, argv: Optional[List[str]]) -> int:
  from components.example_gen import sources  # pylint: disable=g-import-not-at-top
  try:
    config = configure(args, choose_preset(args))
    # The data is only read where the components run: locally, check it now.
    notes = preflight(config) if args.runner == 'local' else []
  except (config_lib.ConfigError, sources.SourceError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if args.runner == 'kubeflow-v2':
    return compile_kubeflow(args, config)
  # One run per root, before anything touches it (keep_writes_inside empties its temp dir).
  try:
    lock = root_lock.acquire(config.pipeline_root, ['pipeline_runner.py'] + list(
        sys.argv[1:] if argv is None else argv))
  except root_lock.RootBusy as e:
    print(f'error: {e}', file=sys.stderr)
    return root_lock.EXIT_BUSY
  except OSError as e:
    print(f'error: cannot lock the pipeline root: {e}', file=sys.stderr)
    return 2
  with lock:
    for note in lock.notes:
      print(note)
    return run_locally(args, config, notes)


def run_locally(args: argparse.Namespace, config: config_lib.PipelineConfig,
                notes: List[str]) -> int:
  """The local run, with the pipeline root locked: components, summary, report."""
  whitened = ', patch whitening' if config.model.patch_whitening else ''
  print(f'preset {config.preset}: {config.model.variant} AlexNet at '
        f'{config.model.image_size}px{whitened}, {config.train.epochs} epochs, tuner '
        f'{config.tune.algorithm if config.tune.enabled else "off"}, '
        f'floor {config.gate.min_accuracy:.2f}')
  print(f'data: {config.data.source_name}: ' + '\n      '.join(notes))
  print(onednn.describe())
  print('writes to: ' + '\n           '.join(f'{path} ({flag})'
                                           for flag, path in written_dirs(config)))
  keep_writes_inside(config.pipeline_root)
  from components import progress  # pylint: disable=g-import-not-at-top
  progress.show_on_console()
  # Google client libraries print a screenful of Python-version and version-bound notices
  # on import; they say nothing about this run.
  warnings.filterwarnings('ignore', category=FutureWarning, module=r'google\.')
  log = console.attach_log(config.pipeline_root)
  if log:
    print(f'log: {log}' + ('' if args.verbose else
                           ' (library messages; --verbose prints them here too)'))

  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx_pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  from tfx_pipeline import run_summary  # pylint: disable=g-import-not-at-top
  pipeline = pipeline_lib.create_pipeline(
      config, fixed_hparams=pipeline_lib.load_fixed_hparams(config),
      enable_cache=not args.no_cache)
  try:
    run_options = partial_run(pipeline, args.to_node)
  except config_lib.ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  started = time.time()
  error = None
  with run_summary.ProgressPrinter(config.metadata_path, config.pipeline_name, started):
    try:
      tfx.orchestration.LocalDagRunner().run(pipeline, run_options=run_options)
    except Exception as e:  # pylint: disable=broad-except
      error = e
  summary = run_summary.summarize(config, started)
  summary.report = write_report(config, started)
  clear_scratch_tmp(config.pipeline_root)
  print(summary.text())
  if log:
    print(f'Log: {log}')
  if error is not None:
    print(f'error: the pipeline failed: {error.__class__.__name__}: {error}', file=sys.stderr)
    full_disk = disk_full_line(error, config)
    if full_disk:
      print(full_disk, file=sys.stderr)
    return 1
  return 0


def disk_full_line(error: BaseException, config: config_lib.PipelineConfig) -> Optional[str]:
  """`error: the disk is full: <path> (...)` when `error` came from a full disk, else None."""
  from components import disk_space  # pylint: disable=g-import-not-at-top
  if not disk_space.is_disk_full(error):
    return None
  path = disk_space.failed_path(error, [config.pipeline_root, config.serving_dir])
  return (f'error: the disk is full: {disk_space.where(path) if path else "(unknown)"}; free '
          'space and run the same command again (finished components are cached, the '
          'Trainer resumes from its last checkpoint)')


if __name__ == '__main__':
  sys.exit(main())
