"""create_pipeline(config) -> tfx.dsl.Pipeline: the graph and nothing else.

    ImportSchemaGen (schema.pbtxt) --+
                                     v
    ImageExampleGen -> StatisticsGen -+-> ExampleValidator
          |                           +-> DataGate <- PreviousSpanStatistics
          |                                  |  (schema anomalies, drift: the run stops)
      [window]  ---------> Transform <-------+   (analyze only: mean/std per channel)
          |                  |
          +--> Tuner <-------+                (skipped with tune.enabled=False)
          +--> Trainer <-----+ <- best_hyperparameters
                  |    ^ base_model: WarmStartModelResolver (warm start)
    LatestBlessedModelResolver -> Evaluator (floor, no regression, per class) --+--> Pusher
                  Trainer -> ServingCheck (TF Serving's loader path) ---------------+
                                  |
    FolderExampleGen (--infer-dir) + InferenceModelResolver (after the Evaluator)
                                  -> BulkInferrer -> predictions.jsonl

InferenceModelResolver is TFX's LatestBlessedModelStrategy ordered after the
Evaluator: the model this run's Evaluator just blessed, else the latest
blessed one (components/bulk_inference/).

[window]: with `--image-dir DIR/span-{SPAN}`, TFX's RollingRange over the
Examples of the last `train_spans` spans (this run's ExampleGen ingests only
the newest); otherwise this run's Examples.

Module code is referenced by dotted path (the package is installed with
`pip install -e .`); `code_digest()` goes into each module component's
config, so editing module code invalidates MLMD's cache for that component.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Iterable, List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
# Not in tfx.v1 yet: TFX's RollingRange as a resolver function (DEVELOPERS.md).
from tfx.dsl.input_resolution import canned_resolver_functions

from components import features
from components import pusher as pusher_lib
from components.bulk_inference.example_gen import FolderExampleGen
from components.bulk_inference.inferrer import bulk_inferrer
from components.data_gate.component import DataGate
from components.data_gate.component import PreviousSpanStatistics
from components.warm_start import BlessedModelBeforeNewestSpan
from components.example_gen import sources
from components.example_gen.component import ImageExampleGen
from components.serving_check.component import ServingCheck
from tfx_pipeline import model_card
from tfx_pipeline.config import ACCURACY_METRIC
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.config import absolute

PREPROCESSING_FN = 'components.transform.preprocessing_fn'
TUNER_FN = 'tuning.tuner.tuner_fn'
RUN_FN = 'components.trainer.run_fn'

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The curated schema: feature types and domains, and drift comparators
# between a span and the previous one (docs: README "Running it every day").
CURATED_SCHEMA = os.path.join(_REPO, 'tfx_pipeline', 'schema.pbtxt')


def code_digest(packages: Iterable[str] = ('components', 'models', 'tuning',
                                           'tfx_pipeline')) -> str:
  """Digest of the project's Python sources (changes when module code changes)."""
  h = hashlib.sha256()
  for package in packages:
    for dirpath, dirnames, filenames in os.walk(os.path.join(_REPO, package)):
      dirnames.sort()
      for name in sorted(n for n in filenames if n.endswith('.py')):
        path = os.path.join(dirpath, name)
        h.update(os.path.relpath(path, _REPO).encode())
        with open(path, 'rb') as f:
          h.update(f.read())
  return h.hexdigest()[:16]


def _accuracy_threshold(floor: float, max_drop: float) -> tfma.MetricThreshold:
  """At least `floor`, and at most `max_drop` below the baseline (ties pass)."""
  return tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={'value': floor}),
      change_threshold=tfma.GenericChangeThreshold(
          direction=tfma.MetricDirection.HIGHER_IS_BETTER,
          absolute={'value': -max_drop - 1e-10}))


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
  """Sparse categorical accuracy on `eval`, overall and per class (sliced by label).

  Overall: an absolute floor and no regression beyond `max_regression`.
  Per class: no class may trail the baseline by more than
  `max_class_regression` (1.0 turns that off), nor fall below
  `min_class_accuracy`.
  """
  gate = config.gate
  overall, by_label = tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])
  # Per slice, never MetricConfig.threshold: TFMA applies that one to every
  # slice, so each class would have to pass the overall floor.
  thresholds = [tfma.PerSliceMetricThreshold(
      slicing_specs=[overall],
      threshold=_accuracy_threshold(gate.min_accuracy, gate.max_regression))]
  if gate.max_class_regression < 1.0 or gate.min_class_accuracy > 0:
    thresholds.append(tfma.PerSliceMetricThreshold(
        slicing_specs=[by_label],
        threshold=_accuracy_threshold(gate.min_class_accuracy, gate.max_class_regression)))
  accuracy = tfma.MetricConfig(
      class_name='SparseCategoricalAccuracy', config='"name": "%s"' % ACCURACY_METRIC,
      per_slice_thresholds=thresholds)
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name=features.EXAMPLE_SIGNATURE, label_key=features.LABEL_KEY,
          prediction_key=features.PROBABILITIES, preprocessing_function_names=[])],
      slicing_specs=[overall, by_label],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          accuracy,
          tfma.MetricConfig(class_name='MultiClassConfusionMatrixPlot'),
      ])])


def training_window(config: PipelineConfig, example_gen):
  """The Examples the Transform, Tuner, Trainer and Evaluator read.

  A plain image tree or tfds: this run's artifact. Spans (`DIR/span-{SPAN}`):
  the newest artifact of each of the last `train_spans` spans (all when 0),
  resolved from MLMD by TFX's RollingRange, so older spans are never re-read
  from disk. The channel is a plain one on ImageExampleGen's output: an
  output channel would see this pipeline run's artifact only. Consumers
  must then be ordered after ImageExampleGen by hand (`add_upstream_node`).
  """
  if not sources.has_spans(config.data.image_dir or ''):
    return example_gen.outputs['examples']
  every_span = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                               producer_component_id=example_gen.id, output_key='examples')
  return canned_resolver_functions.rolling_range(
      every_span, num_spans=config.data.train_spans, min_spans=1)


def data_components(config: PipelineConfig, example_gen):
  """(StatisticsGen, schema component) in either order.

  Curated (or given) schema: ImportSchemaGen first, and StatisticsGen reads
  it, so `is_categorical` INT features (label, channels) get the categorical
  statistics that their L-infinity drift comparators need.
  `schema='infer'`: StatisticsGen, then TFX's SchemaGen infers a schema.
  """
  examples = example_gen.outputs['examples']
  if config.data.schema == 'infer':
    statistics_gen = tfx.components.StatisticsGen(examples=examples).with_id('StatisticsGen')
    return statistics_gen, tfx.components.SchemaGen(
        statistics=statistics_gen.outputs['statistics'],
        infer_feature_shape=True).with_id('SchemaGen')
  path = CURATED_SCHEMA if config.data.schema == 'curated' else config.data.schema
  schema_gen = tfx.components.ImportSchemaGen(schema_file=path).with_id('ImportSchemaGen')
  return tfx.components.StatisticsGen(
      examples=examples, schema=schema_gen.outputs['schema']).with_id('StatisticsGen'), \
      schema_gen


def module_config(config: PipelineConfig, digest: str,
                  fixed_hparams: Optional[dict] = None) -> dict:
  return {**config.module_config(), 'code_digest': digest, 'fixed_hparams': fixed_hparams}


def data_gate(config: PipelineConfig, statistics_gen, schema_gen, custom_resolvers: bool):
  """(PreviousSpanStatistics or None, DataGate): this span's statistics against the schema
  and, when a previous span exists, against its statistics (drift)."""
  previous_statistics = None
  if custom_resolvers:  # the previous span's statistics, resolved after this span's exist
    previous_statistics = tfx.dsl.Resolver(
        strategy_class=PreviousSpanStatistics,
        statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics,
                                   producer_component_id=statistics_gen.id,
                                   output_key='statistics'),
    ).with_id('PreviousSpanStatistics')
    previous_statistics.add_upstream_node(statistics_gen)
  gate = DataGate(
      statistics=statistics_gen.outputs['statistics'],
      schema=schema_gen.outputs['schema'],
      baseline_statistics=previous_statistics.outputs['statistics']
      if previous_statistics else None,
      on_drift=config.data.on_drift).with_id('DataGate')
  return previous_statistics, gate


def warm_start_resolver(config: PipelineConfig, example_gen, custom_resolvers: bool):
  """The last blessed model not trained on the newest span (components/warm_start.py),
  or None when warm start is off; run_fn checks that its architecture matches."""
  if not (config.train.warm_start and custom_resolvers):
    return None
  resolver = tfx.dsl.Resolver(
      strategy_class=BlessedModelBeforeNewestSpan,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
      examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                               producer_component_id=example_gen.id, output_key='examples'),
  ).with_id('WarmStartModelResolver')
  resolver.add_upstream_node(example_gen)  # knows the newest span
  return resolver


def release_components(config: PipelineConfig, window, trainer, digest: str):
  """(LatestBlessedModelResolver, Evaluator, ServingCheck, Pusher): the gates and the push."""
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('LatestBlessedModelResolver')
  evaluator = tfx.components.Evaluator(
      examples=window,  # candidate and baseline on the window's eval splits
      model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'],
      example_splits=['eval'],
      eval_config=eval_config(config)).with_id('Evaluator')
  # Loads the candidate as TF Serving would (TF1 session, warm-up replay) in
  # separate processes; TFX's InfraValidator does the same with the real
  # binary where Docker or Kubernetes exists (docs/serving.md).
  serving_check = ServingCheck(model=trainer.outputs['model'],
                               code_digest=digest).with_id('ServingCheck')
  pusher = pusher_lib.Pusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      infra_blessing=serving_check.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=absolute(config.serving_dir))),
      custom_config=model_card.pusher_config(config),  # the card gathers the run's facts
  ).with_id('Pusher')
  return model_resolver, evaluator, serving_check, pusher


def inference_components(config: PipelineConfig, evaluator, digest: str) -> tuple:
  """(FolderExampleGen, InferenceModelResolver, BulkInferrer); () without `--infer-dir`.

  The resolver is TFX's LatestBlessedModelStrategy, ordered after the
  Evaluator: it finds the model the Evaluator just blessed, or, when this
  run's candidate was refused, the latest blessed one (none on a first run
  that blessed nothing: the BulkInferrer then scores nothing and says so).
  """
  if not config.infer.image_dir:
    return ()
  folder_gen = FolderExampleGen(absolute(config.infer.image_dir), config.data.max_image_pixels,
                                digest).with_id('FolderExampleGen')
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('InferenceModelResolver')
  model_resolver.add_upstream_node(evaluator)  # sees this run's blessing
  inferrer = bulk_inferrer(folder_gen.outputs['examples'], model_resolver.outputs['model'],
                           model_resolver.outputs['model_blessing']).with_id('BulkInferrer')
  return folder_gen, model_resolver, inferrer


def create_pipeline(config: PipelineConfig, fixed_hparams: Optional[dict] = None,
                    enable_cache: bool = True, custom_resolvers: bool = True) -> tfx.dsl.Pipeline:
  """The pipeline; `custom_resolvers=False` leaves out our two resolver strategies.

  (Kubeflow v2 compiles only TFX's built-in ones: without them the DataGate
  checks the schema alone, and the Trainer never warm-starts.)
  """
  digest = code_digest()
  example_gen = ImageExampleGen(data=config.data, code_digest=digest).with_id('ImageExampleGen')
  statistics_gen, schema_gen = data_components(config, example_gen)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=schema_gen.outputs['schema']).with_id('ExampleValidator')
  previous_statistics, gate = data_gate(config, statistics_gen, schema_gen, custom_resolvers)
  window = training_window(config, example_gen)
  transform = tfx.components.Transform(
      examples=window,
      schema=schema_gen.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN,
      splits_config=tfx.proto.SplitsConfig(analyze=['train'], transform=[]),
      materialize=False,
      disable_statistics=True,
      custom_config={'image_size': config.model.image_size,
                     'patch_whitening': config.model.patch_whitening,
                     'code_digest': digest}).with_id('Transform')
  transform.add_upstream_node(example_gen)  # the window's channel does not order them
  transform.add_upstream_node(gate)  # nothing trains on data the gate refused
  train_inputs = dict(
      examples=window,
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(splits=['train']),
      eval_args=tfx.proto.EvalArgs(splits=['eval']))
  settings = module_config(config, digest, fixed_hparams)
  # The TFLite export runs in the Trainer only: a new --tflite value re-runs
  # the Trainer, never the Tuner.
  trainer_settings = {**settings, 'tflite': dataclasses.asdict(config.tflite)}
  tuner = None
  if config.tune.enabled:  # docs/scale_out.md swaps in the Vertex Tuner here
    tuner = tfx.components.Tuner(
        tuner_fn=TUNER_FN, **train_inputs, custom_config=settings).with_id('Tuner')
  warm_start_model = warm_start_resolver(config, example_gen, custom_resolvers)
  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      base_model=warm_start_model.outputs['model'] if warm_start_model else None,
      hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
      **train_inputs, custom_config=trainer_settings).with_id('Trainer')
  model_resolver, evaluator, serving_check, pusher = release_components(
      config, window, trainer, digest)

  components: List = [example_gen, statistics_gen, schema_gen, example_validator,
                      previous_statistics, gate, transform, tuner, model_resolver,
                      warm_start_model, trainer, evaluator, serving_check, pusher,
                      *inference_components(config, evaluator, digest)]
  # SQLite MLMD for local runs; on Kubeflow/Vertex (a URL root) the orchestrator
  # brings its own metadata store.
  metadata = None if '://' in config.metadata_path else \
      tfx.orchestration.metadata.sqlite_metadata_connection_config(absolute(config.metadata_path))
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=absolute(config.pipeline_root),
      components=[c for c in components if c is not None],
      metadata_connection_config=metadata,
      enable_cache=enable_cache,
      beam_pipeline_args=list(config.beam_pipeline_args))


def load_fixed_hparams(config: PipelineConfig) -> Optional[dict]:
  if not config.tune.hparams_file:
    return None
  with open(config.tune.hparams_file) as f:
    return json.load(f)
