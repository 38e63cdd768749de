"""Shared plumbing for the command-line entry points (absl apps)."""

from __future__ import annotations

import os
import stat
import sys
import tempfile

from absl import app, logging

HELP_FLAGS = ("?", "help", "helpshort", "helpfull")


def run(main) -> None:
    """`absl.app.run(main)` with quiet library logs and exit code 0 for --help (absl exits 1 after usage)."""

    def quiet_main(argv):
        from liteframe_jax.checkpoints.orbax_reports import quiet_background_failure_reports

        logging.set_verbosity(logging.WARNING)  # orbax/absl INFO lines would drown the progress output
        quiet_background_failure_reports()  # a failed orbax read/write is reported once, as an error line
        try:
            return main(argv)
        except OSError as e:  # disk full, permission denied, symlink loop, ...: one line, not a traceback
            return error(os_error_line(e))

    try:
        sys.exit(app.run(quiet_main))
    except SystemExit as e:
        if e.code == 1 and any(a.lstrip("-").split("=")[0] in HELP_FLAGS for a in sys.argv[1:]):
            sys.exit(0)
        raise


def error(message: str) -> int:
    """Prints `error: message` to stderr; returns the exit code 1 for `return error(...)` in a main()."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def os_error_line(e: OSError) -> str:
    """'what failed: reason [path]' for an OSError, in one line."""
    where = " ".join(repr(os.fsdecode(p)) for p in (e.filename, e.filename2) if p is not None)
    reason = e.strerror or str(e) or type(e).__name__
    return f"{type(e).__name__}: {reason}" + (f": {where}" if where else "")


def check_destination(path) -> str | None:
    """None when an output can be created at `path` (its parent exists, is a folder and accepts a new entry,
    tried for real: permission bits say nothing for root or read-only mounts); otherwise why not, in one line.
    Lets a CLI refuse before hours of work rather than when it writes the result."""
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(parent):
        return f"the folder {parent!r} for {os.fspath(path)!r} does not exist"
    try:
        probe = tempfile.mkdtemp(prefix=".liteframe-write-check-", dir=parent)
    except OSError as e:
        return f"cannot write into {parent!r} ({e.strerror or e})"
    os.rmdir(probe)
    return None


def check_source(path, kind: str = "folder") -> str | None:
    """None when `path` can be read as a `kind` ("folder" or "file"); otherwise why not, in one line
    (missing, wrong kind, unreadable, a symlink loop)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as e:
        return f"cannot read {kind} {p!r} ({e.strerror or e})"
    is_dir = stat.S_ISDIR(st.st_mode)
    if kind == "folder" and not is_dir:
        return f"{p!r} is not a folder"
    if kind == "file" and is_dir:
        return f"{p!r} is a folder, not a file"
    try:
        if is_dir:
            os.listdir(p)
        else:
            with open(p, "rb"):
                pass
    except OSError as e:
        return f"cannot read {kind} {p!r} ({e.strerror or e})"
    return None
