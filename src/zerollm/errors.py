"""The one base class of zerollm's user-facing errors, and the CLI's error contract.

Every error a user can cause (a bad file, a bad flag or config value, a schema too large to compile, ...)
derives from `ZeroLLMError`. It subclasses ValueError, so code that catches ValueError keeps working.
`cli.main` turns a ZeroLLMError (and ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
NotADirectoryError, PermissionError) into one line on stderr, `zerollm <stage>: error: <message>`, and exit
code 2; `zerollm --debug ...` prints the traceback instead. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class ZeroLLMError(ValueError):
    """A mistake in what the user gave zerollm (the message says what and where)."""


class ConfigError(ZeroLLMError):
    """A config value (YAML, override or config.json) that is out of range, of the wrong type or unknown."""


def check_range(key: str, value, lo=None, hi=None, *, integer: bool = False):
    """`value` itself if lo <= value <= hi (either bound None = open) and, with `integer`, an int; else a
    ConfigError naming `key`. Used where configs are parsed, so nonsense fails before any work starts."""
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if not integer and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
        where = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"{key} must be {where}, got {value!r}")
    return value


__all__ = ["ZeroLLMError", "ConfigError", "check_range"]
