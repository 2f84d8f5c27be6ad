"""Every error hexaflow reports, in one tree.

Each error says **what** went wrong (its message), **where** when it is known (a ``file:line``
of a flow, a record and its field, a setting) and the **fix** (``hint``). Code that must stop
on any of them, such as the command line, catches :class:`HexaflowError`; code that handles
one kind catches that kind::

    HexaflowError
    ├── SpecError            a flow file or a file it names cannot be used (validate, run)
    │   ├── SpecSyntaxError  not well-formed YAML/JSON/CSV, or past a limit: file:line:col
    │   ├── CompileError     an expression or template that does not compile: its offset
    │   ├── TableError       a lookup table that cannot be used: file:line
    │   └── PathError        a name that leads outside the flow's folder
    ├── FlowError            the flow cannot run (invalid, not found, connector not set up)
    ├── RecordError          one record cannot be mapped: it becomes a dead letter
    │   ├── MappingError     ... with where: the route and the field path
    │   └── MoneyError       an amount that is not one (also a ValueError)
    ├── ConnectorError       a connector failure a user can act on (connectors add their own)
    │   └── ConfigError      a connector setting is missing or wrong
    ├── StateError           the state store cannot be opened or used (also a ValueError)
    ├── LostLock             another run took this run's lock: it stops writing
    ├── RetriesExhausted     a request still failed after the retry policy's attempts
    └── ScaffoldError        ``hexaflow init`` cannot write the folder

The messages themselves are listed in docs/messages.md. Errors never carry a secret's value.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hexaflow.problems import Problem


class HexaflowError(Exception):
    """An error for a person to act on: ``message`` (what), ``where`` and ``hint`` (the fix)."""

    def __init__(self, message: str, *, where: str = "", hint: str = ""):
        super().__init__(message)
        self.message, self.where, self.hint = message, where, hint


# -- flow files ------------------------------------------------------------------------------
class SpecError(HexaflowError):
    """A flow file, or a file it names, that cannot be used."""


class SpecSyntaxError(SpecError):
    """A file that is not well-formed YAML/JSON/CSV (or past a limit); carries file:line:col."""

    def __init__(self, file: str, line: int, col: int, message: str, hint: str = ""):
        super().__init__(message, where=f"{file}:{line}:{col}", hint=hint)
        self.args = (f"{file}:{line}:{col}: {message}",)
        self.file, self.line, self.col = file, line, col


class CompileError(SpecError):
    """An expression or template that does not compile. ``offset`` is the character offset of
    the problem inside the source text, when known."""

    def __init__(self, message: str, offset: int | None = None, hint: str = ""):
        super().__init__(message, hint=hint)
        self.offset = offset


class TableError(SpecError):
    """A table file that cannot be used; carries file:line when known."""

    def __init__(self, message: str, file: str, line: int = 1, hint: str = ""):
        super().__init__(message, where=f"{file}:{line}", hint=hint)
        self.file, self.line = file, line


class PathError(SpecError):
    """A name a flow gives that points where a flow may not read or write."""

    def __init__(self, message: str, hint: str):
        super().__init__(message, hint=hint)


# -- runs --------------------------------------------------------------------------------------
class FlowError(HexaflowError):
    """The flow cannot run (invalid spec, unknown file, connector not configured); ``problems``
    are the validate problems behind it, each with its file:line."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = problems or []


class RecordError(HexaflowError):
    """A record cannot be mapped (missing field, bad value). Goes to dead letters."""

    def __init__(self, message: str, *, where: str = "", hint: str = ""):
        super().__init__(message, where=where, hint=hint)


class MappingError(RecordError):
    """A record that failed to map, with where: the route and field path."""

    def __init__(self, message: str, where: str = ""):
        super().__init__(message, where=where)
        self.args = (f"{where}: {message}" if where else message,)
        self.reason = message


class MoneyError(HexaflowError, ValueError):
    """A value that is not an amount (not a number, not finite, too large)."""

    def __init__(self, *args: Any):
        super().__init__(str(args[0]) if args else "")
        self.args = args


# -- connectors and the state store ------------------------------------------------------------
class ConnectorError(HexaflowError):
    """A failure a user can act on (bad credentials, missing scope, unreachable host).

    The message must name what to fix (an environment variable, a scope) and must never
    contain a secret value.
    """

    def __init__(self, message: str = "", *, where: str = "", hint: str = ""):
        super().__init__(message, where=where, hint=hint)


class ConfigError(ConnectorError):
    """The connector is not configured (a required environment variable is missing)."""


class StateError(HexaflowError, ValueError):
    """The state setting (HEXAFLOW_STATE / --state) names no store that can be opened or used."""

    def __init__(self, message: str = ""):
        super().__init__(message)


class LostLock(HexaflowError):
    """This run no longer holds its flow lock (another run took it); it must stop writing."""


class RetriesExhausted(HexaflowError):
    """A request still failed after the retry policy's bounded attempts; ``response`` is the
    last answer, if there was one."""

    def __init__(self, message: str, response: Any = None):
        super().__init__(message)
        self.response = response


class ScaffoldError(HexaflowError):
    """The folder cannot be written (not empty without --force, or not a folder)."""
