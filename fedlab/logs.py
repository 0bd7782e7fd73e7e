"""What a run says while it runs, through Python ``logging``, and where it goes.

Every module logs to a logger under ``fedlab`` (``logging.getLogger(__name__)``): the run's key
facts when it starts, a line before each step that can take long (loading the data, importing
TensorFlow, building the engine, the first evaluation) and one after it with its time, each
evaluation, progress, and the summary. fedlab configures no handler itself (a library must not);
the command line's does, through Hydra's job logging (``conf/hydra/job_logging/fedlab.yaml``):

- **the job's log file**, ``<output dir>/__main__.log`` (Hydra names it after the job, and
  ``python -m fedlab``'s job is ``__main__``): every line, with its time, logger and level;
- **the console** (stderr): every line except those marked ``FILE_ONLY`` (each evaluation, and
  the summary, which goes to stdout), written through ``tqdm.write`` so that a line does not
  break the progress bar. In a terminal the bar shows the rounds; elsewhere (a pipe, ``nohup``,
  a SLURM log) the progress callback writes a line every ``log_every_s`` seconds or
  ``log_every_rounds`` rounds instead (``fedlab.callbacks.progress``).

From Python (``fedlab.run``), the lines go wherever the program's logging sends them:
``logging.basicConfig(level=logging.INFO)`` shows them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger("fedlab")

# ``log.info(..., extra=FILE_ONLY)``: a line for the job's log file, not the console.
FILE_ONLY = {"console": False}


class ConsoleFilter(logging.Filter):
    """Leaves out the records marked ``FILE_ONLY``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True)


class ConsoleHandler(logging.StreamHandler):
    """A stream handler that writes through ``tqdm.write``: a progress bar drawn on the same
    stream is cleared for the line and drawn again below it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:
            self.handleError(record)


def log_file() -> Path | None:
    """The file the job's lines go to (Hydra's job logging), or None without one."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


@contextlib.contextmanager
def step(what: str, logger: logging.Logger = log) -> Iterator[None]:
    """``what ...`` before a step that may take long, and ``what: done in N s`` after it."""
    logger.info("%s ...", what)
    started = time.monotonic()
    yield
    logger.info("%s: done in %.1f s", what, time.monotonic() - started)


def duration(seconds: float) -> str:
    """``42 s``, ``12 min 5 s``, ``3 h 20 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
