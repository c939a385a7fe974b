"""DataGate: the pipeline's data check between StatisticsGen and Transform.

    StatisticsGen ---------------------------+
    ImportSchemaGen (curated schema) --------+--> DataGate --> (Transform waits for it)
    PreviousSpanStatistics (resolver) -------+

It fails the run (so nothing downstream starts) on any schema anomaly, and
on drift past a comparator's threshold unless `on_drift='warn'`. The
verdict is on its ExampleAnomalies artifact (`data_gate` custom property,
`blocked`) for the run summary and the report.
"""


import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import v1 as tfx
from tfx.dsl.components.common import resolver
from tfx.types import artifact_utils

from components.data_gate import checks

STATS_FILE = 'FeatureStats.pb'  # what StatisticsGen writes per split
VERDICT_PROPERTY = 'data_gate'


class DataGateError(RuntimeError):
  """Schema anomalies, or drift with on_drift='fail': names features and figures."""


class PreviousSpanStatistics(resolver.ResolverStrategy):
  """The newest statistics of the span before the newest one (none on the first span).

  Ordered after StatisticsGen, so the newest span's own statistics exist; a
  re-run of a span (new code) does not make it its own baseline.
  """

  def resolve_artifacts(self, store, input_dict: Dict[str, List[Any]]):
    del store
    key, = input_dict
    by_span: Dict[int, List[Any]] = {}
    for artifact in input_dict[key]:
      by_span.setdefault(int(artifact.span or 0), []).append(artifact)
    spans = sorted(by_span)
    if len(spans) < 2:
      return {key: []}
    previous = max(by_span[spans[-2]], key=lambda a: a.id)
    return {key: [previous]}


def _load_stats(artifact, split: str):
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  return tfdv.load_stats_binary(
      os.path.join(artifact_utils.get_split_uri([artifact], split), STATS_FILE))


@tfx.dsl.components.component
def DataGate(  # pylint: disable=invalid-name
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    anomalies: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    baseline_statistics: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleStatistics] = None,
    on_drift: tfx.dsl.components.Parameter[str] = 'fail',
):
  """Validates the new span's statistics against the schema and the previous span."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  schema_proto = tfdv.load_schema_text(os.path.join(schema.uri, 'schema.pbtxt'))
  splits = artifact_utils.decode_split_names(statistics.split_names)
  stats = {split: _load_stats(statistics, split) for split in splits}
  previous: Optional[Any] = None
  baseline = None
  if baseline_statistics is not None:
    previous = _load_stats(baseline_statistics, 'train')
    baseline = f'span {baseline_statistics.span}'
  findings = checks.validate(stats, schema_proto, previous)
  words = checks.verdict(findings, on_drift, baseline)
  anomalies.split_names = statistics.split_names
  anomalies.set_string_custom_property(VERDICT_PROPERTY, words)
  anomalies.set_int_custom_property('blocked', int(checks.blocks(findings, on_drift)))
  anomalies.set_int_custom_property('drift_warnings', len(findings.drift))
  logging.info('DataGate: %s', words)
  if checks.blocks(findings, on_drift):
    raise DataGateError(f'DataGate: {words}')
