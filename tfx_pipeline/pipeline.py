"""create_pipeline(config) -> tfx.dsl.Pipeline: the graph and nothing else.

    ImageExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator
          |                               |
          +------------> Transform <------+   (analyze only: mean/std per channel)
          |                  |
          +--> Tuner <-------+                (skipped with tune.enabled=False)
          +--> Trainer <-----+ <- best_hyperparameters
                  |
    LatestBlessedModelResolver -> Evaluator (floor + no regression) --+--> Pusher
                  Trainer -> ServingCheck (TF Serving's loader path) -----+

Module code is referenced by dotted path (the package is installed with
`pip install -e .`); `code_digest()` goes into each module component's
config, so editing module code invalidates MLMD's cache for that component.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable, List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components import features
from components import pusher as pusher_executor
from components.example_gen.component import ImageExampleGen
from components.example_gen import sources
from components.serving_check.component import ServingCheck
from tfx_pipeline.config import ACCURACY_METRIC
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.config import absolute

PREPROCESSING_FN = 'components.transform.preprocessing_fn'
TUNER_FN = 'tuning.tuner.tuner_fn'
RUN_FN = 'components.trainer.run_fn'

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def input_fingerprint(config: PipelineConfig) -> str:
  data = config.data
  if data.image_dir:
    return sources.fingerprint_tree(data.image_dir)
  return f'tfds:{data.tfds_name}:{data.tfds_data_dir or "default"}'


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
  """Sparse categorical accuracy on `eval`: an absolute floor and no regression."""
  gate = config.gate
  accuracy = tfma.MetricConfig(
      class_name='SparseCategoricalAccuracy', config='"name": "%s"' % ACCURACY_METRIC,
      threshold=tfma.MetricThreshold(
          value_threshold=tfma.GenericValueThreshold(lower_bound={'value': gate.min_accuracy}),
          change_threshold=tfma.GenericChangeThreshold(
              direction=tfma.MetricDirection.HIGHER_IS_BETTER,
              absolute={'value': -gate.max_regression - 1e-10})))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name=features.EXAMPLE_SIGNATURE, label_key=features.LABEL_KEY,
          prediction_key=features.PROBABILITIES, preprocessing_function_names=[])],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          accuracy,
          tfma.MetricConfig(class_name='MultiClassConfusionMatrixPlot'),
      ])])


def module_config(config: PipelineConfig, digest: str,
                  fixed_hparams: Optional[dict] = None) -> dict:
  return {**config.module_config(), 'code_digest': digest, 'fixed_hparams': fixed_hparams}


def create_pipeline(config: PipelineConfig, fixed_hparams: Optional[dict] = None,
                    enable_cache: bool = True) -> tfx.dsl.Pipeline:
  digest = code_digest()
  settings = module_config(config, digest, fixed_hparams)

  example_gen = ImageExampleGen(
      data=config.data,
      input_fingerprint=f'{input_fingerprint(config)}:{digest}').with_id('ImageExampleGen')
  statistics_gen = tfx.components.StatisticsGen(
      examples=example_gen.outputs['examples']).with_id('StatisticsGen')
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'],
      infer_feature_shape=True).with_id('SchemaGen')
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=schema_gen.outputs['schema']).with_id('ExampleValidator')
  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN,
      splits_config=tfx.proto.SplitsConfig(analyze=['train'], transform=[]),
      materialize=False,
      disable_statistics=True,
      custom_config={'image_size': config.model.image_size,
                     'code_digest': digest}).with_id('Transform')

  train_inputs = dict(
      examples=example_gen.outputs['examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(splits=['train']),
      eval_args=tfx.proto.EvalArgs(splits=['eval']),
      custom_config=settings)
  tuner = None
  if config.tune.enabled:
    tuner = tfx.components.Tuner(tuner_fn=TUNER_FN, **train_inputs).with_id('Tuner')
  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
      **train_inputs).with_id('Trainer')

  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('LatestBlessedModelResolver')
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'],
      example_splits=['eval'],
      eval_config=eval_config(config)).with_id('Evaluator')
  # Loads the candidate as TF Serving would (TF1 session, warm-up replay) in
  # separate processes; TFX's InfraValidator does the same with the real
  # binary where Docker or Kubernetes exists (docs/serving.md).
  serving_check = ServingCheck(model=trainer.outputs['model'],
                               code_digest=digest).with_id('ServingCheck')
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      infra_blessing=serving_check.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=absolute(config.serving_dir))),
      custom_executor_spec=executor_spec.ExecutorClassSpec(
          pusher_executor.Executor)).with_id('Pusher')

  components: List = [example_gen, statistics_gen, schema_gen, example_validator,
                      transform, tuner, trainer, model_resolver, evaluator, serving_check, pusher]
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
