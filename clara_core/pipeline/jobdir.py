"""The job directory: everything a local run writes to disk, in one place.

    JOB/payload/                      the pipeline's input: a copy of `--payload DIR`
    JOB/operators/<op>/<output>/      one folder per declared output path of each operator
    JOB/logs/<op>.log                 each operator's stdout and stderr, as they came
    JOB/.isolate/<op>/                `--isolate` only: an empty mount point

A declared container path (/input, /output, /logs ...) is never used as a path on this
machine: `operator_io` maps each one to a folder here. The default job directory is a
fresh private one under the system's temporary directory; a directory named by the
caller must be new or empty, and is never removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from ..errors import AlreadyExists, InvalidArgument, NotFound

PAYLOAD, OPERATORS, LOGS, ISOLATE = "payload", "operators", "logs", ".isolate"


class JobDirectory:
    """One job's directory on disk (see the module docstring for its layout)."""

    def __init__(self, root: str, temporary: bool) -> None:
        self.root = root
        self.temporary = temporary  # made by us under the temp dir: removable afterwards

    @classmethod
    def create(
        cls, pipeline: str, path: str | None = None, payload: str | None = None
    ) -> JobDirectory:
        """Make the job directory (fresh, or `path` if new or empty) and copy the payload in.

        Nothing is left half-made: on any failure what this call created is removed.
        """
        if payload is not None and not os.path.exists(payload):
            raise NotFound(f"payload {payload} does not exist")
        if path is None:
            root = tempfile.mkdtemp(prefix=f"clara-job-{pipeline[:40]}-")
            made_root = True
        else:
            root = os.path.abspath(path)
            made_root = _new_or_empty(root)
        job = cls(root, temporary=path is None)
        try:
            for sub in (OPERATORS, LOGS):
                os.mkdir(os.path.join(root, sub))
            if payload is None:
                os.mkdir(job.payload)
            elif os.path.isdir(payload):
                shutil.copytree(payload, job.payload, symlinks=True)
            else:
                os.mkdir(job.payload)
                shutil.copy2(payload, job.payload)
        except BaseException as exc:
            job._undo(made_root)
            if isinstance(exc, OSError):
                raise InvalidArgument(f"cannot prepare job directory {root}: {exc}") from None
            raise
        return job

    @property
    def payload(self) -> str:
        """The payload folder: what inputs without `from` see (read-only by convention)."""
        return os.path.join(self.root, PAYLOAD)

    def output_dir(self, operator: str, folder: str) -> str:
        """The folder of one declared output path of `operator`."""
        return os.path.join(self.root, OPERATORS, operator, folder)

    def log_path(self, operator: str) -> str:
        """Where the runner writes `operator`'s stdout and stderr."""
        return os.path.join(self.root, LOGS, f"{operator}.log")

    def isolate_root(self, operator: str) -> str:
        """An empty directory, the mount point of `operator`'s root under --isolate."""
        path = os.path.join(self.root, ISOLATE, operator)
        os.makedirs(path, exist_ok=True)
        return path

    def remove(self) -> None:
        """Delete the whole job directory (never follows symbolic links out of it)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def _undo(self, made_root: bool) -> None:
        if made_root:
            self.remove()
            return
        for sub in (PAYLOAD, OPERATORS, LOGS):
            with contextlib.suppress(OSError):
                shutil.rmtree(os.path.join(self.root, sub))


def _new_or_empty(root: str) -> bool:
    """Make `root` if it does not exist (True), accept it if it is an empty directory."""
    try:
        os.makedirs(root)
        return True
    except FileExistsError:
        pass
    except OSError as exc:
        raise InvalidArgument(f"cannot create job directory {root}: {exc.strerror}") from None
    if not os.path.isdir(root):
        raise AlreadyExists(f"job directory {root} exists and is not a directory")
    if os.listdir(root):
        raise AlreadyExists(
            f"job directory {root} is not empty: give a new or empty directory to --job-dir"
        )
    return False
