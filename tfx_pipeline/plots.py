"""The plots of a run, drawn from plain data into PNG bytes: one plotting path for every view.

Why: report.html and the model card show the same curves, counts and
confusion matrix; drawing them here once keeps the two identical and keeps
matplotlib out of the code that reads MLMD. Plots use matplotlib's Agg canvas
directly (no pyplot, no display), so they work on a headless worker.
`data_uri()` embeds a PNG in HTML or Markdown, so a page needs no files
beside it.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Mapping, Optional, Sequence

from tfx_pipeline import run_summary
from tfx_pipeline.run_facts import TimelineRow

_STATE_COLORS = {'done': '#4c9a5b', 'cached': '#9aa5b1', 'FAILED': '#c0392b',
                 'running': '#e6a23c', 'canceled': '#e6a23c'}


def data_uri(png: bytes) -> str:
  """`data:image/png;base64,...`: the image inside the page that shows it."""
  return 'data:image/png;base64,' + base64.b64encode(png).decode('ascii')


def _figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(fig)
  return fig


def _png(fig) -> bytes:
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', bbox_inches='tight')
  return buffer.getvalue()


def timeline_png(rows: Sequence[TimelineRow]) -> bytes:
  """Horizontal bars: when each component ran and for how long, colored by state."""
  fig = _figure(9, 0.4 * len(rows) + 1.2)
  ax = fig.add_subplot()
  end = max([r.start + r.seconds for r in rows] + [1.0])
  labels = [r.node_id for r in rows]
  for i, r in enumerate(rows):
    width = max(r.seconds, end / 400)  # a cached 0 s component stays visible
    ax.barh(i, width, left=r.start, color=_STATE_COLORS.get(r.state, '#888888'))
    ax.text(r.start + width + end / 100, i, f'{run_summary.format_seconds(r.seconds)} {r.state}',
            va='center', fontsize=8)
  ax.set_yticks(range(len(rows)), labels)
  ax.invert_yaxis()
  ax.set_xlim(0, end * 1.18)
  ax.set_xlabel('seconds since the first component started')
  ax.grid(axis='x', alpha=0.3)
  return _png(fig)


def class_counts_png(counts: Mapping[str, Any], class_names: Sequence[str]) -> bytes:
  """Images written per class, one stacked bar per class (train, eval)."""
  names = list(class_names) or sorted({c for s in counts['splits'].values()
                                       for c in s.get('classes', {})})
  fig = _figure(9, 0.28 * len(names) + 1.2)
  ax = fig.add_subplot()
  left = [0] * len(names)
  for split, color in zip(counts['splits'], ('#4878a8', '#e49444', '#6a9f58', '#b07aa1')):
    classes = counts['splits'][split].get('classes', {})
    values = [classes.get(n, {}).get('written', 0) for n in names]
    ax.barh(range(len(names)), values, left=left, color=color, label=split)
    left = [a + b for a, b in zip(left, values)]
  ax.set_yticks(range(len(names)), names, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel('images written')
  ax.legend(loc='lower right', fontsize=8)
  return _png(fig)


def curves_png(history: Sequence[Mapping[str, float]]) -> bytes:
  """Loss and accuracy per epoch, train against eval (Keras' `val_` keys)."""
  fig = _figure(10, 3.4)
  epochs = [row['epoch'] for row in history]
  for i, metric in enumerate(('loss', 'accuracy')):
    ax = fig.add_subplot(1, 2, i + 1)
    for key, label in ((metric, 'train'), (f'val_{metric}', 'eval')):
      values = [row.get(key) for row in history]
      if any(v is not None for v in values):
        ax.plot(epochs, values, marker='o', label=label)
    ax.set_title(metric)
    ax.set_xlabel('epoch')
    ax.set_xticks(epochs if len(epochs) <= 20 else epochs[::max(1, len(epochs) // 10)])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  return _png(fig)


def trials_png(trials: Sequence[Mapping[str, Any]], best: Optional[str],
               x_key: str = 'learning_rate') -> bytes:
  """Score per trial (ranked, the best in green) and, when tuned, score against `x_key`."""
  ranked = sorted(trials, key=lambda t: -(t.get('score') or 0.0))
  xs = [t for t in trials
        if isinstance(t.get(x_key), (int, float)) and t.get('score') is not None]
  fig = _figure(10, max(2.6, 0.24 * len(ranked) + 1.0))
  ax = fig.add_subplot(1, 2 if xs else 1, 1)
  colors = ['#4c9a5b' if t['trial_id'] == best else '#4878a8' for t in ranked]
  ax.barh(range(len(ranked)), [t.get('score') or 0.0 for t in ranked], color=colors)
  ax.set_yticks(range(len(ranked)), [str(t['trial_id']) for t in ranked], fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel('score (validation accuracy, tuning subset)')
  ax.set_ylabel('trial')
  ax.grid(axis='x', alpha=0.3)
  if xs:
    ax = fig.add_subplot(1, 2, 2)
    ax.scatter([t[x_key] for t in xs], [t['score'] for t in xs],
               c=['#4c9a5b' if t['trial_id'] == best else '#4878a8' for t in xs])
    ax.set_xscale('log')
    ax.set_xlabel(x_key)
    ax.set_ylabel('score')
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return _png(fig)


def confusion_png(matrix: Sequence[Sequence[float]], class_names: Sequence[str]) -> bytes:
  """Rows: true class; columns: predicted; color is the row share, text the count."""
  n = len(matrix)
  size = min(11, 2.5 + 0.55 * n)
  fig = _figure(size, size * 0.85)
  ax = fig.add_subplot()
  shares = [[v / max(sum(row), 1e-12) for v in row] for row in matrix]
  image = ax.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  if n <= 20:
    for i in range(n):
      for j in range(n):
        if matrix[i][j]:
          ax.text(j, i, f'{matrix[i][j]:g}', ha='center', va='center', fontsize=8,
                  color='white' if shares[i][j] > 0.5 else 'black')
  ax.set_xticks(range(n), class_names, rotation=45, ha='right', fontsize=8)
  ax.set_yticks(range(n), class_names, fontsize=8)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='share of the true class')
  return _png(fig)
