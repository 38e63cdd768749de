"""Unfinished writes: the sibling folders (`<prefix>HOST-PID-ID`) that atomic writers fill before renaming them
into place, and the removal of those a killed writer left behind.

A writer names its folder with its host and process id. On the next write of the same destination, a folder of a
process of this host that no longer runs is stale: it is removed and named in one line. Folders of live processes
(another writer at work) or of other hosts are left alone; folders named without host and process (older
versions) are named as left alone, for the user to remove.
"""

from __future__ import annotations

import abc
import glob
import json
import os
import shutil
import socket
import sys
import uuid


def new_partial(prefix: str) -> str:
    """A fresh unfinished-write path `<prefix>HOST-PID-ID` (not created)."""
    return f"{prefix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _writer(path: str, prefix: str) -> tuple[str, int] | None:
    """(host, pid) from a path `new_partial(prefix)` made; None for another naming."""
    parts = path[len(prefix):].rsplit("-", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def remove_stale_partials(prefix: str, what: str) -> list[str]:
    """Removes the unfinished writes `<prefix>*` of processes of this host that no longer run, saying so in one
    line on stderr (`what` names the destination); returns the removed paths."""
    removed, unknown = [], []
    for path in sorted(glob.glob(glob.escape(prefix) + "*")):
        writer = _writer(path, prefix)
        if writer is None:
            unknown.append(path)
        elif writer[0] == socket.gethostname() and not _alive(writer[1]):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        print(f"removed {len(removed)} unfinished write(s) of {what} left by stopped processes: {', '.join(removed)}",
              file=sys.stderr)
    if unknown:
        print(f"left alone {len(unknown)} unfinished write(s) of {what} of unknown writers (remove them if nothing "
              f"else writes {what}): {', '.join(unknown)}", file=sys.stderr)
    return removed


def start_partial(path: str, what: str, error: type[Exception], overwrite: bool = False) -> str:
    """Creates and returns a new unfinished-write folder for `path` (a `what`, e.g. "frame store"), after removing
    the stale ones of dead writers; `error` if `path` exists and overwrite is False (with overwrite, `publish`
    replaces it only once the new write is finished)."""
    if os.path.exists(path) and not overwrite:
        raise error(f"{path} already exists (pass overwrite=True to replace it)")
    remove_stale_partials(f"{path}.partial-", f"{what} {path}")
    tmp = new_partial(f"{path}.partial-")
    os.makedirs(tmp)
    return tmp


def publish(partial: str, path: str) -> str:
    """Renames the finished write `partial` to `path`; an existing `path` (the caller allowed overwriting) is moved
    aside first and removed after the swap, so `path` always holds one complete version. Returns `path`."""
    old = None
    if os.path.exists(path):
        old = f"{path}.replaced-{uuid.uuid4().hex[:8]}"
        os.rename(path, old)
    os.rename(partial, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    return path


class PartialDirWriter(abc.ABC):
    """The life cycle of a writer that fills an unfinished-write folder and publishes it: open -> closed (by the
    subclass's `close`, which ends with `self._state = "closed"`) or aborted (the folder removed, `path` left
    untouched); a context manager that closes on success and aborts on an exception. Subclasses set `path`,
    `_tmp` and `_state = "open"`, name their exception class in `error`, and close their open files in
    `_release` (called before an abort removes the folder)."""

    error: type[Exception] = ValueError
    path: str
    _tmp: str
    _state: str

    def _release(self) -> None:
        pass

    def abort(self) -> None:
        """Deletes the unfinished write; `path` is left untouched."""
        if self._state == "open":
            self._release()
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._state = "aborted"

    def _check_open(self) -> None:
        if self._state != "open":
            raise self.error(f"the writer of {self.path} is {self._state}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @abc.abstractmethod
    def close(self):
        """Finishes the write and publishes it at `path`; returns `path`."""


class FinishedDirReader(abc.ABC):
    """A reader of a finished directory that reopens it when unpickled (grain workers each hold their own): only
    the attributes named in `pickled` travel, then `_open()` runs again. `info` is the parsed metadata, whose
    "num_examples" is the reader's length."""

    pickled: tuple[str, ...] = ("path",)
    info: dict

    @abc.abstractmethod
    def _open(self) -> None:
        """Opens the directory at self.path and sets self.info."""

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.pickled}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return self.info["num_examples"]


def read_finished_metadata(path: str, meta_name: str, what: str, error: type[Exception],
                           unfinished: str = "unfinished writes") -> dict:
    """The JSON metadata file `meta_name` of the finished directory `path` (a `what`, e.g. "frame store"), or
    `error` naming what is wrong: nothing at `path` (listing the `unfinished` folders beside it), no metadata file
    (its writer did not complete), or an unreadable one."""
    meta_file = os.path.join(path, meta_name)
    if not os.path.isdir(path):
        partial = glob.glob(glob.escape(path) + ".partial-*")
        hint = f" (found {unfinished}: {', '.join(sorted(partial))})" if partial else ""
        raise error(f"no {what} at {path}{hint}")
    if not os.path.isfile(meta_file):
        raise error(f"{path} is not a finished {what}: {meta_name} is missing (its writer did not complete)")
    try:
        with open(meta_file) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise error(f"{meta_file} is unreadable: {e}") from None
