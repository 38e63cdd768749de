"""Shared plumbing for the command-line entry points (absl apps)."""

from __future__ import annotations

import sys

from absl import app, logging

HELP_FLAGS = ("?", "help", "helpshort", "helpfull")


def run(main) -> None:
    """`absl.app.run(main)` with quiet library logs and exit code 0 for --help (absl exits 1 after usage)."""

    def quiet_main(argv):
        logging.set_verbosity(logging.WARNING)  # orbax/absl INFO lines would drown the progress output
        return main(argv)

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
