"""What the data gate decides, from TFDV's own validation: pure functions.

TFDV validates a span's statistics against the curated schema
(tfx_pipeline/schema.pbtxt) and, given the previous span's statistics,
applies the schema's drift comparators (L-infinity distance for the label
and the channel count, Jensen-Shannon divergence for image size, brightness
and contrast). This module only sorts TFDV's anomalies into schema problems
and drift, and words them so that one line names the feature and the figure.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

from tensorflow_metadata.proto.v0 import anomalies_pb2

_Reason = anomalies_pb2.AnomalyInfo
# TFDV's anomaly types for a comparator above its threshold.
DRIFT_TYPES = frozenset({
    _Reason.COMPARATOR_L_INFTY_HIGH,
    _Reason.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH,
    _Reason.COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH,
})


class Findings(NamedTuple):
  schema: List[str]  # 'split: feature: description' per schema anomaly
  drift: List[str]  # 'feature: description' per comparator above its threshold

  @property
  def clean(self) -> bool:
    return not self.schema and not self.drift


def _lines(anomalies: anomalies_pb2.Anomalies, drift: bool, prefix: str) -> List[str]:
  lines = []
  for feature, info in sorted(anomalies.anomaly_info.items()):
    for reason in info.reason:
      if (reason.type in DRIFT_TYPES) == drift:
        lines.append(f'{prefix}{feature}: {reason.description or reason.short_description}')
  for reason in anomalies.dataset_anomaly_info.reason:
    if (reason.type in DRIFT_TYPES) == drift:
      lines.append(f'{prefix}(dataset): {reason.description or reason.short_description}')
  return lines


def validate(statistics_by_split, schema, previous_train=None) -> Findings:
  """TFDV's verdict on each split, and on drift of `train` against the previous span's.

  Args:
    statistics_by_split: {split: DatasetFeatureStatisticsList} of the new span.
    schema: the curated schema (with drift comparators).
    previous_train: the previous span's `train` statistics; None: no drift check.
  """
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  schema_lines, drift_lines = [], []
  for split, stats in sorted(statistics_by_split.items()):
    previous = previous_train if split == 'train' else None
    anomalies = tfdv.validate_statistics(stats, schema, previous_statistics=previous)
    schema_lines += _lines(anomalies, drift=False, prefix=f'{split}: ')
    drift_lines += _lines(anomalies, drift=True, prefix='')
  return Findings(schema_lines, drift_lines)


def verdict(findings: Findings, on_drift: str, baseline: Optional[str]) -> str:
  """One paragraph for the log, the artifact and the run summary."""
  against = f'against {baseline}' if baseline else 'no previous span to compare with'
  if findings.clean:
    return f'passed: no schema anomaly; no drift ({against})'
  parts = []
  if findings.schema:
    parts.append('schema anomalies: ' + '; '.join(findings.schema))
  if findings.drift:
    action = 'stops the run' if on_drift == 'fail' else 'warning only (--on-drift warn)'
    parts.append(f'drift ({against}, {action}): ' + '; '.join(findings.drift))
  return ' | '.join(parts)


def blocks(findings: Findings, on_drift: str) -> bool:
  return bool(findings.schema) or (bool(findings.drift) and on_drift == 'fail')
