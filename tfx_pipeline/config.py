"""Pipeline configuration: frozen dataclasses, the three presets, validation.

Everything a run needs is one `PipelineConfig`. Presets are plain functions
(`smoke`, `cpu`, `full`); command-line overrides go through
`dataclasses.replace`, and every dataclass validates itself in `__post_init__`
so a bad value fails in one clear line before any component starts.

Module code that TFX runs (transform, tuner, trainer) never reads flags: it gets
the relevant sections of this config as a plain dict through `custom_config`
and rebuilds the dataclasses with `from_dict`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple

PRESETS = ('smoke', 'cpu', 'full')
VARIANTS = ('cifar', 'paper')
TUNER_ALGORITHMS = ('hyperband', 'random', 'bayesian')
BAD_IMAGE_POLICIES = ('skip', 'fail')
DRIFT_POLICIES = ('fail', 'warn')
# The TFLite copy of each pushed version (components/tflite_export.py).
TFLITE_QUANTIZATIONS = ('off', 'float', 'dynamic', 'int8')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Beam flags that tell the workers what to install (TFX's dependency_utils list).
BEAM_DEPENDENCY_FLAGS = ('extra_package', 'extra_packages', 'setup_file', 'requirements_file',
                         'worker_harness_container_image', 'sdk_container_image')
# Runners that submit through a Beam job service (docs/scale_out.md, "Beam's portable
# runner"). Beam gives the launcher's stream of job messages a deadline of
# --job_server_timeout (default 60 s): any component whose Beam job runs longer fails
# with DEADLINE_EXCEEDED although the job succeeds. A refused connection still fails
# at once; only a job service that accepts and then hangs waits this long.
PORTABLE_RUNNERS = ('PortableRunner', 'FlinkRunner', 'SparkRunner')
PORTABLE_JOB_TIMEOUT = 24 * 3600  # seconds: the longest Beam job a component may run

# The `paper` variant's stem (11x11 stride 4, three 3x3/2 max-pools) needs at
# least 67x67 pixels to leave a 1x1 map; see models/alexnet.py.
MIN_IMAGE_SIZE = {'cifar': 8, 'paper': 67}

# Images whose header declares more pixels than this are refused before they
# are decoded: skipped (and listed) by ImageExampleGen, an InvalidArgumentError
# from the serving signatures (components/image_header.py). 4096x4096 (16.8
# megapixels) passes every phone and most camera photos; decoding one costs
# 50 MB as uint8 and 200 MB as the float32 the transform resizes. A 16000x16000
# PNG of zeros (746 KB) would cost 3.8 GB.
MAX_IMAGE_PIXELS = 4096 * 4096
# The floor of the limit: the exported warm-up requests hold a 300x200 image.
MIN_MAX_IMAGE_PIXELS = 256 * 256


class ConfigError(ValueError):
  """A configuration value is out of range; the message names the field."""


# TFX caps pipeline names at 63 characters; Kubeflow v2 allows only these.
PIPELINE_NAME_PATTERN = r'[a-z0-9][a-z0-9-]{0,62}'


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def _may_be_dir(path: str) -> bool:
  """False for an empty path or an existing file: neither can hold a run's files."""
  return bool(path) and ('://' in path or not os.path.isfile(os.path.expanduser(path)))


def absolute(path: str) -> str:
  """An absolute local path; URIs such as gs://bucket/x are returned unchanged."""
  return path if '://' in path else os.path.abspath(path)


def parse_conv_widths(text: str) -> Tuple[int, ...]:
  """'64,128,256,256,256' -> (64, 128, 256, 256, 256); ModelConfig checks the count."""
  return tuple(int(w) for w in text.split(','))


def _from_dict(cls, values: Mapping[str, Any]):
  """Rebuilds a config dataclass from `dataclasses.asdict` output (lists → tuples)."""
  kwargs = {}
  for f in dataclasses.fields(cls):
    if f.name in values:
      value = values[f.name]
      kwargs[f.name] = tuple(value) if isinstance(value, list) else value
  return cls(**kwargs)


@dataclass(frozen=True)
class DataConfig:
  """Where images come from and how they are split."""
  image_dir: Optional[str] = None  # class-folder tree; None reads tfds `tfds_name`
  tfds_name: str = 'cifar10'
  tfds_data_dir: Optional[str] = None  # None: tfds' default (~/tensorflow_datasets)
  eval_percent: int = 10  # share of a single-split source hashed into `eval` (45k/5k)
  max_examples: Optional[int] = None  # cap on examples read per source split
  on_bad_image: str = 'skip'  # undecodable files: `skip` (listed) or `fail`
  split_seed: int = 0  # salt of the split hash; changing it reshuffles train/eval
  # With `image_dir='DIR/span-{SPAN}'` each run ingests the newest span and
  # trains on the last `train_spans` spans (0: all of them).
  train_spans: int = 0
  # `curated`: tfx_pipeline/schema.pbtxt through ImportSchemaGen (with drift
  # comparators); `infer`: TFX's SchemaGen infers one from this run's
  # statistics (to regenerate the curated one); else a schema.pbtxt path.
  schema: str = 'curated'
  on_drift: str = 'fail'  # drift past a comparator's threshold: `fail` or `warn`
  # Largest image (height x width, from its header) that ingestion and serving
  # decode; larger ones are refused before decoding (decompression bombs).
  max_image_pixels: int = MAX_IMAGE_PIXELS

  def __post_init__(self):
    _require(self.max_image_pixels >= MIN_MAX_IMAGE_PIXELS,
             f'max_image_pixels must be at least {MIN_MAX_IMAGE_PIXELS} (256x256), '
             f'got {self.max_image_pixels}')
    _require(0 < self.eval_percent < 100,
             f'eval_percent must be in 1..99, got {self.eval_percent}')
    _require(self.max_examples is None or self.max_examples > 0,
             f'max_examples must be positive, got {self.max_examples}')
    _require(self.train_spans >= 0, f'train_spans must be >= 0, got {self.train_spans}')
    _require(self.on_drift in DRIFT_POLICIES,
             f'on_drift must be one of {DRIFT_POLICIES}, got {self.on_drift!r}')
    _require(self.schema in ('curated', 'infer') or os.path.isfile(self.schema),
             f"schema must be 'curated', 'infer' or a schema.pbtxt file, got {self.schema!r}")
    _require(self.on_bad_image in BAD_IMAGE_POLICIES,
             f'on_bad_image must be one of {BAD_IMAGE_POLICIES}, '
             f'got {self.on_bad_image!r}')
    _require(self.tfds_data_dir is None or _may_be_dir(self.tfds_data_dir),
             f'tfds data dir {self.tfds_data_dir!r} is a file, not a directory')

  @property
  def source_name(self) -> str:
    return f'image folder {self.image_dir}' if self.image_dir else f'tfds {self.tfds_name}'


@dataclass(frozen=True)
class ModelConfig:
  """The network: which AlexNet and at what input size."""
  variant: str = 'cifar'  # `cifar`: 5 convs for 32x32; `paper`: Krizhevsky 2012
  image_size: int = 32  # pixels per side after the transform's resize
  # A frozen first layer of patch-whitening filters, computed by Transform
  # (components/whitening.py). On in the cpu preset (docs/training.md).
  patch_whitening: bool = False
  # Channels of the five convolutions before the Tuner's width multiplier;
  # None: the variant's own (models/alexnet.py: 32-64-128-256-256 for `cifar`).
  conv_widths: Optional[Tuple[int, ...]] = None
  # Identity (dirac) initialization of the stride-1 convolutions
  # (models/alexnet.py). On in the cpu preset, with patch whitening.
  dirac_init: bool = False

  def __post_init__(self):
    _require(self.conv_widths is None
             or (len(self.conv_widths) == 5 and all(w >= 1 for w in self.conv_widths)),
             f'conv_widths must be five positive channel counts, got {self.conv_widths}')
    _require(self.variant in VARIANTS,
             f'model variant must be one of {VARIANTS}, got {self.variant!r}')
    minimum = MIN_IMAGE_SIZE[self.variant]
    _require(minimum <= self.image_size <= 512,
             f'image size {self.image_size} is out of range for the '
             f'{self.variant!r} variant (needs {minimum}..512)')


@dataclass(frozen=True)
class TrainConfig:
  """How the Trainer fits the model chosen by the Tuner."""
  epochs: int = 20
  batch_size: int = 128  # 128 beats 256 on a 2-core CPU (benchmarks/)
  early_stopping_patience: int = 0  # epochs without val gain; 0 disables
  # Decoded, normalized images are cached in memory when they fit this budget
  # (45k x 32x32x3 float32 is 0.55 GB); larger sets re-run the transform per epoch.
  cache_limit_gb: float = 2.0
  mixed_precision: bool = False  # float16 compute; worth it only on GPUs
  jit_compile: bool = False  # XLA; slower on CPU (benchmarks/), try on GPUs
  seed: int = 42
  deterministic: bool = False  # deterministic TF ops: repeatable runs, slower
  # Day two: start from the last blessed model's weights (the Trainer's
  # `base_model`) when its architecture matches, for a shorter schedule at a
  # lower peak learning rate. False: always train from scratch.
  warm_start: bool = True
  warm_start_epochs: int = 5
  warm_start_lr_scale: float = 0.3
  # Replay: the share of the images the base model already trained on that
  # each warm epoch draws (a fresh random sample every epoch); the window's
  # new images are all seen every epoch. 1.0: whole epochs over the window.
  warm_start_replay: float = 1.0
  # The export's signatures average each image's prediction with its mirror's
  # (components/serving.py): +1.2 points for the cpu preset, one network call
  # on twice the batch. The Trainer's own val_accuracy is without it.
  test_time_flip: bool = True
  # Polyak averaging (models/ema.py): the Trainer keeps an exponential moving
  # average of the weights, a <- m*a + (1-m)*w per step, validates and exports
  # it. 0: off; 0.99 averages over about the last 100 steps. The Tuner's
  # trials never average. At a short budget it measured no gain (docs/training.md,
  # "Accuracy levers, measured"); not measured at full length.
  ema_momentum: float = 0.0
  # Alternating flips (components/data.py): each training image is mirrored in
  # every other epoch (a random half in the first) rather than at random.
  # One worker, whole epochs over the window; the Tuner's trials, a warm
  # start's replay and several workers keep random flips. Measured at 30
  # epochs: no gain (docs/training.md, "Accuracy levers, measured").
  alternating_flip: bool = False
  # BatchNorm biases step at this multiple of the learning rate
  # (models/training.py, BiasScaledSGD); 1: plain SGD. The Tuner's trials
  # keep 1. Measured at 64 over 30 epochs: no gain (docs/training.md).
  bias_lr_scale: float = 1.0

  def __post_init__(self):
    _require(self.epochs >= 1, f'epochs must be at least 1, got {self.epochs}')
    _require(self.bias_lr_scale > 0,
             f'bias_lr_scale must be positive (1: off), got {self.bias_lr_scale}')
    _require(0 <= self.ema_momentum < 1,
             f'ema_momentum must be in [0, 1) (0: off), got {self.ema_momentum}')
    _require(self.warm_start_epochs >= 1,
             f'warm_start_epochs must be at least 1, got {self.warm_start_epochs}')
    _require(0 < self.warm_start_lr_scale <= 1,
             f'warm_start_lr_scale must be in (0, 1], got {self.warm_start_lr_scale}')
    _require(0 < self.warm_start_replay <= 1,
             f'warm_start_replay must be in (0, 1], got {self.warm_start_replay}')
    _require(self.batch_size >= 1,
             f'batch size must be at least 1, got {self.batch_size}')
    _require(self.early_stopping_patience >= 0,
             'early_stopping_patience must be >= 0, '
             f'got {self.early_stopping_patience}')
    _require(self.cache_limit_gb >= 0,
             f'cache_limit_gb must be >= 0, got {self.cache_limit_gb}')


@dataclass(frozen=True)
class TuneConfig:
  """The Keras Tuner search: algorithm, budget and search-space ranges."""
  enabled: bool = True  # False: train with the defaults or `hparams_file`
  hparams_file: Optional[str] = None  # JSON of HyperParameters.get_config()
  algorithm: str = 'hyperband'
  max_trials: int = 6  # random / bayesian only; Hyperband sizes itself
  max_epochs: int = 4  # epochs of the longest trial
  hyperband_factor: int = 3
  train_examples: int = 10_000  # tune on a subset of the train split ...
  eval_examples: int = 2_000  # ... and of the eval split
  # Search-space ranges (tuning/search_space.py owns the space itself).
  # The cpu budget (2 h on 2 cores) affords width 1.0 for 30 epochs, and short
  # tuning trials favour narrower nets that then lose in the long run: fixed.
  width_multipliers: Tuple[float, ...] = (1.0,)  # first value is the default
  dense_units: Tuple[int, ...] = (512, 1024)
  seed: int = 7
  # A finished search is reused while the model, this config and the class
  # names stay the same (new data alone does not search again); True starts
  # a new search (`--retune`).
  retune: bool = False

  def __post_init__(self):
    _require(self.algorithm in TUNER_ALGORITHMS,
             f'tuner must be one of {TUNER_ALGORITHMS}, got {self.algorithm!r}')
    _require(self.max_trials >= 1, f'trials must be at least 1, got {self.max_trials}')
    _require(self.max_epochs >= 1,
             f'tuning epochs must be at least 1, got {self.max_epochs}')
    _require(self.hyperband_factor >= 2,
             f'hyperband factor must be >= 2, got {self.hyperband_factor}')
    _require(self.train_examples >= 1 and self.eval_examples >= 1,
             'tuning subsets must hold at least one example')
    _require(bool(self.width_multipliers) and all(w > 0 for w in self.width_multipliers),
             f'width multipliers must be positive, got {self.width_multipliers}')
    _require(bool(self.dense_units) and all(u > 0 for u in self.dense_units),
             f'dense units must be positive, got {self.dense_units}')
    _require(self.hparams_file is None or os.path.isfile(self.hparams_file),
             f'hyperparameters file not found: {self.hparams_file}')


# The metric the Evaluator gates on (TFMA's name for it).
ACCURACY_METRIC = 'sparse_categorical_accuracy'


@dataclass(frozen=True)
class GateConfig:
  """The Evaluator's blessing rules."""
  min_accuracy: float = 0.80  # absolute floor on eval-split accuracy
  # A candidate may trail the last blessed model by at most this much
  # (0 means "no regression at all"; ties pass).
  max_regression: float = 0.0
  # Per class (TFMA slices the eval data by label): the candidate may trail
  # the baseline by at most this much on any one class; 1.0 turns it off.
  max_class_regression: float = 0.05
  min_class_accuracy: float = 0.0  # optional absolute floor on every class

  def __post_init__(self):
    _require(0.0 <= self.max_class_regression <= 1.0,
             f'max_class_regression must be in 0..1, got {self.max_class_regression}')
    _require(0.0 <= self.min_class_accuracy <= 1.0,
             f'min_class_accuracy must be in 0..1, got {self.min_class_accuracy}')
    _require(0.0 <= self.min_accuracy <= 1.01,
             f'min accuracy must be in 0..1 (1.01 blocks every model), '
             f'got {self.min_accuracy}')
    _require(self.max_regression >= 0,
             f'max_regression must be >= 0, got {self.max_regression}')


@dataclass(frozen=True)
class InferConfig:
  """Batch inference: a folder of new images that the latest blessed model scores."""
  # Any layout (flat, or sub-folders), no labels. None: no inference branch.
  # The run writes predictions.jsonl under the pipeline root (BulkInferrer).
  image_dir: Optional[str] = None

  def __post_init__(self):
    _require(self.image_dir is None or _may_be_dir(self.image_dir),
             f'infer dir {self.image_dir!r} is a file, not a directory')


@dataclass(frozen=True)
class TFLiteConfig:
  """The TFLite model written beside each pushed version (tflite/<version>/).

  Figures for each quantization (size, batch-1 latency, accuracy against the
  SavedModel's): docs/serving.md, `benchmarks/tflite.py`.
  """
  # off: none; float: float32; dynamic: int8 weights, float activations
  # (no data needed, about 4x smaller); int8: full-integer, calibrated on
  # `representative_images` of the training split.
  quantization: str = 'dynamic'
  representative_images: int = 200  # training images that set int8's activation ranges

  def __post_init__(self):
    _require(self.quantization in TFLITE_QUANTIZATIONS,
             f'TFLite quantization must be one of {TFLITE_QUANTIZATIONS}, '
             f'got {self.quantization!r}')
    _require(self.representative_images >= 1,
             f'representative_images must be at least 1, got {self.representative_images}')


@dataclass(frozen=True)
class PipelineConfig:
  """One pipeline run: the preset it came from plus every section."""
  preset: str
  pipeline_root: str = 'outputs/pipeline'
  serving_dir: str = 'outputs/serving'
  pipeline_name: str = 'cifar10-alexnet'
  data: DataConfig = field(default_factory=DataConfig)
  model: ModelConfig = field(default_factory=ModelConfig)
  train: TrainConfig = field(default_factory=TrainConfig)
  tune: TuneConfig = field(default_factory=TuneConfig)
  gate: GateConfig = field(default_factory=GateConfig)
  infer: InferConfig = field(default_factory=InferConfig)
  tflite: TFLiteConfig = field(default_factory=TFLiteConfig)
  beam_workers: int = 1  # >1: Beam DirectRunner in multi_processing mode
  beam_args: Tuple[str, ...] = ()  # passed through (Dataflow, Flink, Spark)
  # Training compute that the run summary and report.html hold the run against,
  # in TFLOP, Tuner and Trainer together (models/flops.py counts it). Only
  # printed, never enforced; None: no budget.
  compute_budget_tflop: Optional[float] = None

  def __post_init__(self):
    _require(self.preset in PRESETS,
             f'preset must be one of {PRESETS}, got {self.preset!r}')
    _require(self.beam_workers >= 1,
             f'beam workers must be at least 1, got {self.beam_workers}')
    _require(re.fullmatch(PIPELINE_NAME_PATTERN, self.pipeline_name) is not None,
             f'pipeline name {self.pipeline_name!r} must be 1-63 lowercase letters, digits '
             "and '-', starting with a letter or digit (Kubeflow v2's rule)")
    for name, path in (('pipeline root', self.pipeline_root), ('serving dir', self.serving_dir)):
      _require(_may_be_dir(path), f'{name} {path!r} is a file, not a directory')
    bad = [a for a in self.beam_args if not a.startswith('--')]
    _require(not bad, f'Beam arguments are written --name=value, got {bad}')
    _require(self.compute_budget_tflop is None or self.compute_budget_tflop > 0,
             f'compute budget must be positive, got {self.compute_budget_tflop}')

  @property
  def metadata_path(self) -> str:
    """SQLite MLMD database of this pipeline root."""
    return os.path.join(self.pipeline_root, 'metadata.sqlite')

  @property
  def tuner_dir(self) -> str:
    """Keras Tuner state, stable across runs so an interrupted search resumes."""
    return os.path.join(self.pipeline_root, 'tuner_state')

  @property
  def beam_pipeline_args(self) -> Tuple[str, ...]:
    """DirectRunner flags, this package as the workers' dependency, then `beam_args`.

    Without a dependency flag, TFX builds an sdist of TFX itself before every
    Beam component (copying the 49 MB package; about 9 s each, four times a
    run). The workers need this project's package anyway (its executors and
    preprocessing_fn), so `--setup_file` names it unless `beam_args` already
    gives a dependency flag. The DirectRunner stages nothing either way.
    A portable runner's job may outlast Beam's 60 s job-service deadline:
    `--job_server_timeout` is raised unless `beam_args` sets it.
    """
    args = ['--direct_num_workers=%d' % self.beam_workers]
    if self.beam_workers > 1:
      args.append('--direct_running_mode=multi_processing')
    if not any(a.split('=')[0].lstrip('-') in BEAM_DEPENDENCY_FLAGS for a in self.beam_args):
      args.append('--setup_file=' + os.path.join(REPO, 'setup.py'))
    flags = {a.split('=')[0].lstrip('-'): a.partition('=')[2] for a in self.beam_args}
    if flags.get('runner') in PORTABLE_RUNNERS and 'job_server_timeout' not in flags:
      args.append('--job_server_timeout=%d' % PORTABLE_JOB_TIMEOUT)
    return tuple(args) + tuple(self.beam_args)

  def module_config(self) -> dict:
    """The JSON-safe part of the config that module code receives."""
    return {
        'model': dataclasses.asdict(self.model),
        'train': dataclasses.asdict(self.train),
        'tune': dataclasses.asdict(self.tune),
        'tuner_dir': absolute(self.tuner_dir),
        'backup_root': absolute(os.path.join(self.pipeline_root, 'train_backup')),
        # The serving signatures refuse larger images (components/serving.py).
        'max_image_pixels': self.data.max_image_pixels,
    }


def smoke() -> PipelineConfig:
  """A few minutes on 2 cores: tiny data, a narrow net, a five-trial search.

  The end-to-end test runs this preset on a generated 10-class fixture:
    python pipeline_runner.py --preset smoke --image-dir tests/...
  It checks plumbing, not accuracy: the gate's floor is 0. The search is the
  default algorithm (Hyperband) at its smallest useful size.
  """
  return PipelineConfig(
      preset='smoke',
      data=DataConfig(max_examples=2_000),
      train=TrainConfig(epochs=2, batch_size=32, deterministic=True, warm_start_epochs=1),
      tune=TuneConfig(max_epochs=2, hyperband_factor=2,  # Hyperband: 5 tiny trials
                      train_examples=256, eval_examples=64,
                      width_multipliers=(0.25,), dense_units=(64, 128)),
      # Plumbing, not accuracy: a 2-epoch model's per-class figures are noise.
      gate=GateConfig(min_accuracy=0.0, max_class_regression=1.0),
  )


def cpu() -> PipelineConfig:
  """The 50,000 CIFAR-10 training images on a 2-core machine in at most 2 hours.

  `cifar` variant at 32x32 with a frozen patch-whitening first layer and
  identity-initialized convolutions, Hyperband on a 10k/2k subset, then 30
  epochs on 45k images. Measured figures and commands: docs/training.md
  ("The levers at a glance", "The three stacked"). The compute budget is
  400 TFLOP of training (the net: 59.3 MFLOP forward per image with the
  512-unit head, `python -m models.flops --preset cpu`).
  """
  # Day two: 8 warm epochs, each over the new span and a fresh half of the
  # images the base model saw, at 0.3 of the peak rate: as accurate as 8 whole
  # epochs at the full rate for 55% of their images (docs/training.md, "Replay").
  return PipelineConfig(preset='cpu',
                        model=ModelConfig(patch_whitening=True, dirac_init=True),
                        train=TrainConfig(epochs=30, warm_start_epochs=8,
                                          warm_start_lr_scale=0.3, warm_start_replay=0.5),
                        compute_budget_tflop=400.0)


def full() -> PipelineConfig:
  """GPU scale: the 227x227 `paper` recipe and a larger search.

  Targets, not yet measured: >= 80% for `paper` in 15 epochs, >= 90% for
  `cifar` (`--model-variant cifar --image-size 32`).
  """
  return PipelineConfig(
      preset='full',
      model=ModelConfig(variant='paper', image_size=227),
      train=TrainConfig(epochs=15, batch_size=128, mixed_precision=True),
      tune=TuneConfig(max_epochs=9, train_examples=20_000, eval_examples=5_000,
                      width_multipliers=(1.0, 0.5, 1.5), dense_units=(4096, 1024, 2048)),
      gate=GateConfig(min_accuracy=0.80),
  )


PRESET_FACTORIES = {'smoke': smoke, 'cpu': cpu, 'full': full}


def preset(name: str) -> PipelineConfig:
  if name not in PRESET_FACTORIES:
    raise ConfigError(f'unknown preset {name!r}; choose one of {PRESETS}')
  return PRESET_FACTORIES[name]()


def model_config_from_dict(values: Mapping[str, Any]) -> ModelConfig:
  return _from_dict(ModelConfig, values)


def train_config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
  return _from_dict(TrainConfig, values)


def tune_config_from_dict(values: Mapping[str, Any]) -> TuneConfig:
  return _from_dict(TuneConfig, values)


def pipeline_config_from_dict(values: Mapping[str, Any]) -> PipelineConfig:
  """Rebuilds a PipelineConfig from `dataclasses.asdict(config)` (e.g. after JSON)."""
  sections = {'data': DataConfig, 'model': ModelConfig, 'train': TrainConfig,
              'tune': TuneConfig, 'gate': GateConfig, 'infer': InferConfig,
              'tflite': TFLiteConfig}
  return _from_dict(PipelineConfig, {
      **values, **{k: _from_dict(cls, values[k]) for k, cls in sections.items() if k in values}})


def tflite_config_from_dict(values: Optional[Mapping[str, Any]]) -> TFLiteConfig:
  """None (module config written before the TFLite export existed): the defaults."""
  return _from_dict(TFLiteConfig, values) if values is not None else TFLiteConfig()
