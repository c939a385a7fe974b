"""Progress messages from module code, shown on the console whatever absl's verbosity.

Python logging below WARNING goes to the run log only (tfx_pipeline/console.py);
module code logs its progress (images checked, counts, skipped files) on this
logger instead, and pipeline_runner.py attaches a console handler to it.
"""

import logging
import sys

LOGGER = logging.getLogger('cifar10_alexnet')


def show_on_console(stream=sys.stdout) -> None:
  """Prints this project's INFO messages (once, however often it is called)."""
  if not any(getattr(h, '_project_console', False) for h in LOGGER.handlers):
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter('%(message)s'))
    handler._project_console = True  # pylint: disable=protected-access
    LOGGER.addHandler(handler)
  LOGGER.setLevel(logging.INFO)
  LOGGER.propagate = False
