"""How the command line reports errors: one line, a documented exit code.

A user's mistake (a bad setting, an unknown backend, a missing driver, an
unreachable service) is never a traceback: it is one ``error:`` line on
stderr naming the variable, option or address, with any URL credentials
hidden. Exit codes:

- ``0``: success;
- ``1``: the command ran and failed (a service is unreachable, a check or a
  demo step failed, an unexpected error);
- ``2``: the command could not run as configured (invalid setting or option,
  unknown backend, missing driver);
- ``130``: interrupted (Ctrl-C).

An error a2a-scale does not expect (a bug) is one line too, unless
``--debug`` or ``A2A_SCALE_DEBUG=1`` asks for the full traceback.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from a2a_scale.errors import A2AScaleError, BackendNotFoundError, ConfigurationError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV = 'A2A_SCALE_DEBUG'

_URL_CREDENTIALS = re.compile(r'(?P<scheme>[a-z][a-z0-9+.-]*://)[^@/\s]+@', re.I)

err_console = Console(stderr=True, highlight=False)

P = ParamSpec('P')
R = TypeVar('R')


class _State:
    debug = False


state = _State()
"""Process-wide CLI state set by the root options (``--debug``)."""


def redact(text: str) -> str:
    """Hides the user and password of any URL in `text`."""
    return _URL_CREDENTIALS.sub(r'\g<scheme>***@', text)


def one_line(text: str) -> str:
    """Joins the lines of `text` into one, dropping blank ones."""
    return ' '.join(line.strip() for line in text.splitlines() if line.strip())


def fail(message: str, code: int) -> NoReturn:
    """Prints a one-line error to stderr and exits with `code`."""
    err_console.print(
        f'[bold red]error:[/] {escape(redact(one_line(message)))}',
        soft_wrap=True,
    )
    raise typer.Exit(code)


def unknown_backend(error: BackendNotFoundError, *, option: str | None) -> str:
    """The message for an unknown backend, blaming `option` if it was given."""
    source = option or 'A2A_SCALE_BACKEND'
    listed = ', '.join(error.installed) or '(none)'
    return (
        f'Unknown a2a-scale backend {error.name!r} ({source}). '
        f'Installed backends: {listed}.'
    )


def describe(error: BaseException) -> tuple[str, int]:
    """The one-line message and exit code of `error`."""
    text = str(error) or type(error).__name__
    if isinstance(error, (ConfigurationError, BackendNotFoundError, ImportError)):
        return text, EXIT_CONFIG
    if isinstance(error, (A2AScaleError, ConnectionError, TimeoutError, OSError)):
        return text, EXIT_FAILED
    return (
        f'unexpected {type(error).__name__}: {text} (this may be a bug: rerun '
        f'with --debug or {DEBUG_ENV}=1 for the traceback)',
        EXIT_FAILED,
    )


def guarded(command: Callable[P, R]) -> Callable[P, R]:
    """Turns any error of `command` into one line and an exit code.

    With ``--debug`` (or ``A2A_SCALE_DEBUG=1``) errors propagate with their
    traceback instead.
    """
    if getattr(command, '__a2a_scale_guarded__', False):
        return command

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            if state.debug:
                raise
            fail('interrupted', EXIT_INTERRUPTED)
        except Exception as e:
            if state.debug or _is_click_error(e):
                raise
            message, code = describe(e)
            fail(message, code)

    run.__a2a_scale_guarded__ = True  # type: ignore[attr-defined]
    return run


def _is_click_error(error: BaseException) -> bool:
    """Whether `error` is a usage error that click reports itself."""
    return any(cls.__name__ == 'ClickException' for cls in type(error).__mro__)
