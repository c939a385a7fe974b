"""ServingCheck: a TFX component that blesses a model only if TF Serving's loader path serves it.

    serving_check = ServingCheck(model=trainer.outputs['model'])
    pusher = Pusher(..., infra_blessing=serving_check.outputs['blessing'])

A stand-in for TFX's InfraValidator where neither Docker nor Kubernetes is
available: instead of starting the TF Serving binary, it loads the model
through the same TF1 loader path in separate processes (executor.py) and
replays the model's warm-up requests. Same output type (InfraBlessing), same
effect on the Pusher.
"""

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.v1.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.serving_check import executor

DEFAULT_TIMEOUT_SECONDS = 300  # per load-and-replay process


class ServingCheckSpec(types.ComponentSpec):
  PARAMETERS = {
      executor.TIMEOUT_KEY: ExecutionParameter(type=int),
      # The check's code is part of the result: a changed check runs again.
      'code_digest': ExecutionParameter(type=str),
  }
  INPUTS = {executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}
  OUTPUTS = {executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing)}


class ServingCheck(tfx.types.BaseComponent):
  SPEC_CLASS = ServingCheckSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, model: types.BaseChannel, code_digest: str = '',
               timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS):
    super().__init__(spec=ServingCheckSpec(
        model=model, timeout_seconds=timeout_seconds, code_digest=code_digest,
        blessing=types.Channel(type=standard_artifacts.InfraBlessing)))
