"""ImageExampleGen: a TFX component that turns images into checked, split tf.Examples.

Reads a tensorflow-datasets dataset (CIFAR-10 by default) or a class-folder
tree, decodes every image once to check it, and writes `Split-train` and
`Split-eval` TFRecords of tf.Example (encoded bytes, int64 label, stable id,
height, width). Class names, per-split counts and the list of skipped files
travel with the artifact (files at its root and MLMD custom properties).
"""

import dataclasses
import json

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.example_gen import executor
from tfx_pipeline import config as config_lib


class ImageExampleGenSpec(types.ComponentSpec):
  PARAMETERS = {
      executor.DATA_CONFIG_KEY: ExecutionParameter(type=str),
      # Changes when the source's files change, so MLMD caching sees new data.
      executor.FINGERPRINT_KEY: ExecutionParameter(type=str),
  }
  INPUTS = {}
  OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class ImageExampleGen(base_beam_component.BaseBeamComponent):
  SPEC_CLASS = ImageExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, data: config_lib.DataConfig, input_fingerprint: str):
    super().__init__(spec=ImageExampleGenSpec(
        data_config=json.dumps(dataclasses.asdict(data), sort_keys=True),
        input_fingerprint=input_fingerprint,
        examples=types.Channel(type=standard_artifacts.Examples)))
