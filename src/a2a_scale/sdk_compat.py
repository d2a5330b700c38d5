"""Every a2a-sdk name a2a-scale relies on that the SDK does not promise.

The cluster handler fixes a2a-sdk gaps through a few SDK internals: names the
SDK's packages do not export, private methods it overrides, and private
attributes it reads or replaces. A new SDK release may rename any of them,
and an override of a renamed method would silently stop being called. So
they are all listed here, in `SDK_NAMES`, and nowhere else, together with
the public methods the handler overrides and the public arguments it needs
(which older releases lack):

- `verify` checks each one against the installed SDK (it exists, it is the
  kind of object expected, and an overridden or called method still has the
  parameters relied on) and returns the problems, one line each;
- `require` raises one `UnsupportedSDKError` naming them, the installed
  a2a-sdk version and the supported range; importing `a2a_scale.handler`
  calls it, so an unsupported SDK fails before any request is served;
- the handler gets the SDK's unexported classes from this module
  (``from a2a_scale.sdk_compat import ActiveTaskRegistry``), which checks
  first; a2a-scale reads a `TaskVersion`'s value only through
  `task_version_value`.

Importing this module never fails and imports no SDK internals.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from enum import Enum
from importlib import metadata
from typing import TYPE_CHECKING, Any

from a2a_scale.errors import UnsupportedSDKError

if TYPE_CHECKING:
    from a2a.server.agent_execution.active_task import ActiveTask
    from a2a.server.agent_execution.active_task_registry import ActiveTaskRegistry
    from a2a.server.cluster import TaskVersion

__all__ = [
    'SDK_NAMES',
    'SUPPORTED_SDK_RANGE',
    'ActiveTask',
    'ActiveTaskRegistry',
    'SdkName',
    'Use',
    'installed_sdk_version',
    'require',
    'sdk_version_supported',
    'task_version_value',
    'verify',
]

SUPPORTED_SDK_RANGE = '>=1.3.0,<2'
"""The a2a-sdk versions this release supports, as in its requirements."""

_LOWEST_SUPPORTED = (1, 3)
_FIRST_UNSUPPORTED = (2,)

_ACTIVE_TASK = 'a2a.server.agent_execution.active_task'
_REGISTRY = 'a2a.server.agent_execution.active_task_registry'
_HANDLER = 'a2a.server.request_handlers.default_request_handler_v2'
_VERSION = 'a2a.server.cluster.version'


class Use(Enum):
    """How a2a-scale relies on an SDK name."""

    MODULE = 'module imported'
    CLASS = 'class used'
    OVERRIDE = 'method overridden'
    """The SDK calls it; a2a-scale's override must keep its exact parameters."""
    CALL = 'method called'
    """a2a-scale calls it with the parameters listed (by name)."""
    PROPERTY = 'property read'
    ATTRIBUTE = 'instance attribute replaced'
    """Set by the SDK in the functions listed, which a2a-scale relies on."""
    SLOT = 'slot read'


@dataclass(frozen=True)
class SdkName:
    """One SDK name a2a-scale relies on, and how."""

    module: str
    """The module that defines it."""
    name: str
    """Dotted name inside `module` (``Class.member``); empty for the module."""
    use: Use
    why: str
    """What a2a-scale needs it for."""
    parameters: tuple[str, ...] = ()
    """For methods: the parameter names relied on (with ``self``)."""
    used_in: tuple[str, ...] = ()
    """For instance attributes: SDK functions (in `module`) that must name it."""

    @property
    def path(self) -> str:
        """The full dotted name."""
        return f'{self.module}.{self.name}' if self.name else self.module


SDK_NAMES: tuple[SdkName, ...] = (
    # The registry of running tasks: not exported by the SDK.
    SdkName(_REGISTRY, '', Use.MODULE, 'the handler replaces the task registry'),
    SdkName(
        _REGISTRY,
        'ActiveTaskRegistry',
        Use.CLASS,
        'subclassed to follow the tasks this replica runs',
    ),
    SdkName(
        _REGISTRY,
        'ActiveTaskRegistry.__init__',
        Use.CALL,
        'the replacement registry is built with these arguments',
        (
            'self',
            'agent_executor',
            'task_store',
            'push_sender',
            'event_stream',
            'interrupted_task_timeout',
        ),
    ),
    SdkName(
        _REGISTRY,
        'ActiveTaskRegistry.get_or_create',
        Use.OVERRIDE,
        'overridden to start the remote-cancel watch of each new turn',
        (
            'self',
            'task_id',
            'call_context',
            'context_id',
            'create_task_if_missing',
            'initial_message',
        ),
    ),
    SdkName(
        _REGISTRY,
        'ActiveTaskRegistry._on_active_task_cleanup',
        Use.OVERRIDE,
        'overridden to end watches and settle pushes of a released task',
        ('self', 'active_task'),
    ),
    SdkName(
        _REGISTRY,
        'ActiveTaskRegistry.get',
        Use.CALL,
        'finds the task running here for a subscription',
        ('self', 'task_id'),
    ),
    # The task the registry runs: not exported by the SDK.
    SdkName(_ACTIVE_TASK, '', Use.MODULE, 'the handler taps and cancels runs'),
    SdkName(_ACTIVE_TASK, 'ActiveTask', Use.CLASS, 'a task running here'),
    SdkName(_ACTIVE_TASK, 'ActiveTask.task_id', Use.PROPERTY, 'names the task'),
    SdkName(
        _ACTIVE_TASK,
        'ActiveTask.is_finished',
        Use.PROPERTY,
        'ends a watch whose run is over',
    ),
    SdkName(
        _ACTIVE_TASK,
        'ActiveTask.subscribe',
        Use.CALL,
        'taps a task running here for a subscription',
        ('self', 'include_initial_task'),
    ),
    SdkName(
        _ACTIVE_TASK,
        'ActiveTask.cancel',
        Use.CALL,
        'stops a run that another replica cancelled',
        ('self', 'call_context'),
    ),
    SdkName(
        _ACTIVE_TASK,
        'ActiveTask.aclose',
        Use.CALL,
        'stops a run without writing when a replica hands its tasks over',
        ('self',),
    ),
    # The request handler's registry: a private attribute it replaces.
    SdkName(
        _HANDLER,
        'DefaultRequestHandlerV2._active_task_registry',
        Use.ATTRIBUTE,
        "replaced by the cluster handler's registry",
        used_in=(
            'DefaultRequestHandlerV2.__init__',
            'DefaultRequestHandlerV2.aclose',
            'DefaultRequestHandlerV2.on_cancel_task',
        ),
    ),
    # Public, but missing before a2a-sdk 1.3.
    SdkName(
        _HANDLER,
        'DefaultRequestHandlerV2.__init__',
        Use.CALL,
        'the cluster handler passes these arguments by name',
        (
            'self',
            'agent_executor',
            'task_store',
            'agent_card',
            'push_sender',
            'event_stream',
            'interrupted_task_timeout',
        ),
    ),
    # Public request methods the handler overrides: the SDK's transports must
    # still call them with these parameters.
    *(
        SdkName(
            _HANDLER,
            f'DefaultRequestHandlerV2.{method}',
            Use.OVERRIDE,
            'overridden by the cluster handler',
            ('self', 'params', 'context'),
        )
        for method in (
            'on_message_send',
            'on_message_send_stream',
            'on_cancel_task',
            'on_subscribe_to_task',
        )
    ),
    SdkName(
        _HANDLER,
        'DefaultRequestHandlerV2.aclose',
        Use.OVERRIDE,
        'overridden to drain watches and pushes',
        ('self',),
    ),
    # The integer a2a-scale's stores keep in a TaskVersion.
    SdkName(
        _VERSION,
        'TaskVersion._value',
        Use.SLOT,
        "stores read back the integer of a version (the SDK's own stores do)",
    ),
)
"""Every SDK name a2a-scale relies on beyond the SDK's exported API."""


def installed_sdk_version() -> str:
    """The installed a2a-sdk version, or ``'unknown'``."""
    try:
        return metadata.version('a2a-sdk')
    except metadata.PackageNotFoundError:
        return 'unknown'


def sdk_version_supported(version: str | None = None) -> bool:
    """Whether `version` (default: the installed one) is in the supported range."""
    found = re.match(r'(\d+)\.(\d+)', version or installed_sdk_version())
    if found is None:
        return False
    release = (int(found[1]), int(found[2]))
    return _LOWEST_SUPPORTED <= release < _FIRST_UNSUPPORTED


def verify() -> list[str]:
    """Checks every name in `SDK_NAMES`; returns the problems, one line each."""
    problems: list[str] = []
    for entry in SDK_NAMES:
        problem = _check(entry)
        if problem is not None:
            problems.append(f'{entry.path} {problem} (a2a-scale: {entry.why})')
    return problems


def require() -> None:
    """Raises `UnsupportedSDKError` if any name in `SDK_NAMES` fails its check.

    Raises:
        UnsupportedSDKError: Naming every problem, the installed a2a-sdk
            version and the supported range.
    """
    global _required  # noqa: PLW0603
    if _required:
        return
    problems = verify()
    if problems:
        raise UnsupportedSDKError(
            problems, installed=installed_sdk_version(), supported=SUPPORTED_SDK_RANGE
        )
    _required = True


_required = False


def task_version_value(version: TaskVersion) -> Any:
    """The value a store wrapped in `version` (``0`` for ``MISSING``).

    The SDK keeps it private; its own SQL stores read it the same way.
    """
    return version._value


_EXPORTED = {'ActiveTask': _ACTIVE_TASK, 'ActiveTaskRegistry': _REGISTRY}


def __getattr__(name: str) -> Any:
    """Serves the SDK's unexported classes, once the SDK passed `require`."""
    module = _EXPORTED.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    require()
    return getattr(importlib.import_module(module), name)


# -- checks -------------------------------------------------------------------


class _MissingError(Exception):
    """A dotted name does not resolve."""


def _check(entry: SdkName) -> str | None:
    """What is wrong with `entry` in the installed SDK, or None."""
    try:
        module = importlib.import_module(entry.module)
    except ImportError:
        return 'is missing (its module cannot be imported)'
    if entry.use is Use.MODULE:
        return None
    owner_name, _, member = entry.name.rpartition('.')
    try:
        if entry.use is Use.ATTRIBUTE:
            return _check_attribute(module, entry, member)
        found = _resolve(module, entry.name)
        if entry.use is Use.SLOT:
            owner = _resolve(module, owner_name)
            return None if member in getattr(owner, '__slots__', ()) else 'is missing'
    except _MissingError:
        return 'is missing'
    if entry.use is Use.CLASS:
        return None if inspect.isclass(found) else 'is no longer a class'
    if entry.use is Use.PROPERTY:
        return None if isinstance(found, property) else 'is no longer a property'
    return _check_parameters(entry, found)


def _resolve(module: object, dotted: str) -> Any:
    found: Any = module
    for part in dotted.split('.'):
        try:
            found = inspect.getattr_static(found, part)
        except AttributeError:
            raise _MissingError from None
    return found


def _check_parameters(entry: SdkName, found: object) -> str | None:
    function = (
        found.__func__ if isinstance(found, staticmethod | classmethod) else found
    )
    if not callable(function):
        return 'is no longer a method'
    if entry.use is Use.OVERRIDE and getattr(function, '__isabstractmethod__', False):
        return 'is missing (only an abstract declaration is left)'
    try:
        signature = inspect.signature(inspect.unwrap(function))
    except (TypeError, ValueError):
        return 'has no readable signature'
    names = tuple(signature.parameters)
    expected = entry.parameters
    if entry.use is Use.OVERRIDE:
        if names == expected:
            return None
        return (
            f'changed: a2a-scale overrides it as ({", ".join(expected)}), '
            f'the SDK has ({", ".join(names)})'
        )
    lacking = [name for name in expected if name not in names]
    if lacking:
        return f'changed: it lacks the parameter {", ".join(lacking)}'
    return None


def _check_attribute(module: object, entry: SdkName, member: str) -> str | None:
    for function_name in entry.used_in:
        try:
            function = inspect.unwrap(_resolve(module, function_name))
        except _MissingError:
            return f'is no longer checkable: {function_name} is missing'
        code = getattr(function, '__code__', None)
        if code is None or member not in code.co_names:
            return f'is no longer used by {function_name}'
    return None
