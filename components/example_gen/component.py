"""ImageExampleGen: a TFX component that turns images into checked, split tf.Examples.

Reads a tensorflow-datasets dataset (CIFAR-10 by default) or a class-folder
tree, decodes every image once to check it, and writes `Split-train` and
`Split-eval` TFRecords of tf.Example (encoded bytes, int64 label, stable id,
height, width). Class names, per-split counts and the list of skipped files
travel with the artifact (files at its root and MLMD custom properties).

With `--image-dir 'DIR/span-{SPAN}'` each run ingests the newest span only
(driver.py resolves it, as TFX's ExampleGens do); the artifact records its
span, and a resolver gives the Trainer a window of recent spans.
"""

import dataclasses
import json

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.v1.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.example_gen import driver
from components.example_gen import executor
from tfx_pipeline import config as config_lib


class ImageExampleGenSpec(types.ComponentSpec):
  PARAMETERS = {
      driver.DATA_CONFIG_KEY: ExecutionParameter(type=str),
      # The driver adds the input fingerprint (the files and this digest), so
      # MLMD's cache re-runs ExampleGen when the data or the code changes.
      driver.CODE_DIGEST_KEY: ExecutionParameter(type=str),
  }
  INPUTS = {}
  OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class ImageExampleGen(tfx.types.BaseBeamComponent):
  SPEC_CLASS = ImageExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
  DRIVER_CLASS = driver.Driver

  def __init__(self, data: config_lib.DataConfig, code_digest: str):
    super().__init__(spec=ImageExampleGenSpec(
        data_config=json.dumps(dataclasses.asdict(data), sort_keys=True),
        code_digest=code_digest,
        examples=types.Channel(type=standard_artifacts.Examples)))
