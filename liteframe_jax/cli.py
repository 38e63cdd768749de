"""Shared plumbing for the command-line entry points (absl apps)."""

from __future__ import annotations

import ast
import os
import re
import stat
import sys
import tempfile

from absl import app, flags, logging

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
        sys.exit(app.run(quiet_main, flags_parser=parse_flags))
    except SystemExit as e:
        if e.code == 1 and any(a.lstrip("-").split("=")[0] in HELP_FLAGS for a in sys.argv[1:]):
            sys.exit(0)
        raise


def parse_flags(argv):
    """absl's flag parsing with each error as one `error:` line: a bad value (absl would add usage advice) or a
    `--config.a.b=...` naming a field the config lacks, with ml_collections' nearest name (it raises a KeyError
    or AttributeError through a 50-line traceback)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(error(" ".join(str(e).split())))
    except (KeyError, AttributeError) as e:
        line = _unknown_field_line(e, argv)
        if line is None:  # not an override's fault (a bug in a config file): keep the traceback
            raise
        sys.exit(error(line))


def _unknown_field_line(e: Exception, argv) -> str | None:
    """'--config.x.y: the config has no field 'y' (did you mean 'z'?)' for the override that names the missing
    field of ml_collections' error `e`; None when no override names it."""
    inner = e
    while isinstance(inner, BaseException) and inner.args:  # AttributeError(KeyError(message))
        inner = inner.args[0]
    text = str(inner)
    missing = text.split("\n")[0].strip("'\"\\ ")
    overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
    named = [a for a in overrides if missing in a.split(".")[1:]]
    if not missing or not named:
        return None
    nearest = re.search(r'Did you mean "([^"]+)"', text)
    hint = f" (did you mean {nearest.group(1)!r}?)" if nearest else ""
    return f"{named[0]}: the config has no field {missing!r}{hint}"


class _ListParser(flags.ArgumentParser):
    """A list-valued config field from the command line: '32,32', '(32, 32)', '[32, 32]' or 'q_proj,v_proj'
    (items are Python literals where they parse, else text)."""

    def parse(self, argument):
        if isinstance(argument, (list, tuple)):
            return list(argument)
        text = argument.strip()
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            if text[:1] in "[(" and text[-1:] in "])":
                text = text[1:-1]
            return [_literal_or_text(item) for item in text.split(",") if item.strip()]
        return list(value) if isinstance(value, (list, tuple)) else [value]

    def flag_type(self) -> str:
        return "list"


class _UnsetParser(flags.ArgumentParser):
    """A config field whose default is None (e.g. an optional token id): a Python literal, else the text."""

    def parse(self, argument):
        return _literal_or_text(argument) if isinstance(argument, str) else argument

    def flag_type(self) -> str:
        return "literal"


def _literal_or_text(text: str):
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def define_config_flag(name: str, help_text: str):
    """`config_flags.DEFINE_config_file(name, ...)` (locked) whose every field can be set with `--NAME.a.b=...`:
    besides absl's int/float/str/bool/tuple, list fields (image sizes, windows, LoRA targets, sharding rules)
    and fields that default to None."""
    from ml_collections import config_flags

    config_flags.register_flag_parser_for_type(list, _ListParser())
    config_flags.register_flag_parser_for_type(type(None), _UnsetParser())
    return config_flags.DEFINE_config_file(name, None, help_text, lock_config=True)


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
