"""Registers the ``postgres`` backend without importing asyncpg."""

from collections.abc import Callable
from typing import Any

from a2a_scale import BackendSpec, hookimpl
from a2a_scale_postgres.settings import PostgresSettings


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Registers the PostgreSQL backend."""
    register(
        BackendSpec(
            name='postgres',
            factory='a2a_scale_postgres.backend:create_backend',
            settings_model=PostgresSettings,
            description='PostgreSQL: one transaction per save, LISTEN/NOTIFY.',
            requires=('asyncpg',),
            extra='postgres',
        )
    )


@hookimpl
def register_commands(app: Any) -> None:
    """Adds the ``a2a-scale postgres`` command group."""
    from a2a_scale_postgres.cli import app as postgres_app  # noqa: PLC0415

    app.add_typer(postgres_app, name='postgres')
