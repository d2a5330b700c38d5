"""Backend specifications: what a plugin registers."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pydantic_settings import BaseSettings

if TYPE_CHECKING:
    from a2a.server.owner_resolver import OwnerResolver

    from a2a_scale.backend import Backend
    from a2a_scale.settings import ScaleSettings


class BackendFactory(Protocol):
    """Builds a backend from the core and the plugin settings."""

    def __call__(
        self,
        settings: ScaleSettings,
        plugin_settings: BaseSettings,
        *,
        owner_resolver: OwnerResolver,
    ) -> Backend:
        """Returns a backend that has not been started."""


@dataclass(frozen=True)
class BackendSpec:
    """Describes one backend a plugin provides.

    Attributes:
        name: The value of ``A2A_SCALE_BACKEND`` that selects it.
        factory: Builds the backend from the core and plugin settings. It may
            be a dotted path ``'package.module:callable'`` so that registering
            the backend imports no driver.
        settings_model: The plugin's pydantic-settings model (own env prefix).
        description: One line for ``a2a-scale backends``.
        requires: Top-level modules the backend needs (e.g. ``('redis',)``).
        extra: The ``a2a-scale[...]`` extra that installs ``requires``.
        install: The pip requirement that installs ``requires``, for
            third-party backends (e.g. ``'a2a-scale-mine'``); it wins over
            `extra` in the missing-driver message.
    """

    name: str
    factory: BackendFactory | str
    settings_model: type[BaseSettings]
    description: str = ''
    requires: tuple[str, ...] = field(default=())
    extra: str | None = None
    install: str | None = None

    def missing_requirements(self) -> list[str]:
        """Returns the required modules that are not importable."""
        return [
            module
            for module in self.requires
            if importlib.util.find_spec(module) is None
        ]

    def check_requirements(self) -> None:
        """Raises `ImportError` naming the extra when a driver is missing."""
        missing = self.missing_requirements()
        if missing:
            requirement = self.install or f'a2a-scale[{self.extra or self.name}]'
            raise ImportError(
                f'The {self.name!r} backend needs {", ".join(missing)}, '
                f'which is not installed. Install it with: pip install '
                f'"{requirement}"',
                name=missing[0],
            )

    def resolve_factory(self) -> BackendFactory:
        """Returns the factory callable, importing it if given as a path."""
        if not isinstance(self.factory, str):
            return self.factory
        self.check_requirements()
        module_name, _, attr = self.factory.partition(':')
        module = importlib.import_module(module_name)
        factory: BackendFactory = getattr(module, attr)
        return factory
