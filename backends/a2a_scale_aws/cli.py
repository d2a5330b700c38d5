"""``a2a-scale aws ...``: provision, print the IAM policy, reap dead queues.

The commands read the same settings as the backend (``A2A_SCALE_NAMESPACE``,
``A2A_SCALE_AWS_*``, the standard AWS credential chain). Importing this
module does not import aioboto3.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from a2a_scale import A2AScaleError, ScaleSettings, load_settings
from a2a_scale_aws.names import ResourceNames
from a2a_scale_aws.settings import AWSSettings

if TYPE_CHECKING:
    from a2a_scale_aws.clients import AWSClients

app = typer.Typer(
    name='aws',
    help='AWS backend: provision resources, print the IAM policy, reap queues.',
    no_args_is_help=True,
)

EXIT_FAILED = 1
EXIT_CONFIG = 2


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f'error: {message}', err=True)
    raise typer.Exit(code)


def _settings() -> tuple[ResourceNames, AWSSettings]:
    try:
        core = load_settings(ScaleSettings)
        aws = load_settings(AWSSettings)
        return ResourceNames(core.namespace), aws
    except A2AScaleError as e:
        _fail(str(e), EXIT_CONFIG)


def _run(coroutine_factory: object) -> object:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        return asyncio.run(coroutine_factory())  # type: ignore[operator]
    except A2AScaleError as e:
        _fail(str(e), EXIT_FAILED)
    except ClientError as e:
        error = e.response.get('Error', {})
        _fail(
            f'{e.operation_name} failed: {error.get("Code")} ({error.get("Message")})',
            EXIT_FAILED,
        )
    except BotoCoreError as e:
        _fail(f'AWS SDK error: {e}', EXIT_FAILED)


async def _with_clients(aws: AWSSettings, action: object) -> object:
    from a2a_scale_aws.clients import open_clients  # noqa: PLC0415

    async with open_clients(region=aws.region, endpoint_url=aws.endpoint_url) as c:
        return await action(c)  # type: ignore[operator]


@app.command()
def provision() -> None:
    """Create the table, its indexes, TTL and the topic if missing."""
    names, aws = _settings()

    async def action(clients: AWSClients) -> object:
        from a2a_scale_aws.provision import provision as run  # noqa: PLC0415

        return await run(clients, names)

    report = _run(lambda: _with_clients(aws, action))
    for line in getattr(report, 'created', []):
        typer.echo(f'created  {line}')
    for line in getattr(report, 'existing', []):
        typer.echo(f'exists   {line}')
    typer.echo(f'topic    {getattr(report, "topic_arn", "")}')


@app.command()
def policy(
    account_id: Annotated[
        str | None,
        typer.Option(
            help='12-digit account id; defaults to A2A_SCALE_AWS_ACCOUNT_ID, '
            'then to the caller identity from STS.'
        ),
    ] = None,
    with_provision: Annotated[
        bool,
        typer.Option(
            '--provision', help='Also allow creating the table, TTL and topic.'
        ),
    ] = False,
) -> None:
    """Print the least-privilege IAM policy of the application's role."""
    from a2a_scale_aws.policy import application_policy_json  # noqa: PLC0415

    names, aws = _settings()
    account = account_id or aws.account_id
    if account is None:

        async def action(clients: AWSClients) -> object:
            return (await clients.sts.get_caller_identity())['Account']

        account = str(_run(lambda: _with_clients(aws, action)))
    try:
        text = application_policy_json(
            names,
            region=aws.region,
            account=account,
            provision=with_provision,
        )
    except A2AScaleError as e:
        _fail(str(e), EXIT_CONFIG)
    typer.echo(text)


@app.command()
def reap(
    older_than: Annotated[
        float,
        typer.Option(
            min=1.0, help='Seconds without a heartbeat after which a replica is dead.'
        ),
    ] = 60.0,
) -> None:
    """Unsubscribe, then delete, the queues of dead replicas."""
    names, aws = _settings()

    async def action(clients: AWSClients) -> object:
        from a2a_scale_aws.backend import resolve_topic_arn  # noqa: PLC0415
        from a2a_scale_aws.lifecycle import SqsQueueLifecycle  # noqa: PLC0415
        from a2a_scale_aws.stream import SnsSqsEventStream  # noqa: PLC0415

        topic = await resolve_topic_arn(clients, names, aws.account_id)
        stream = SnsSqsEventStream(
            clients.dynamodb, clients.sns, clients.sqs, table_name=names.table
        )
        lifecycle = SqsQueueLifecycle(
            clients, names, instance_id='a2a-scale-cli', topic_arn=topic, stream=stream
        )
        return await lifecycle.reap(older_than=older_than)

    reaped = _run(lambda: _with_clients(aws, action))
    assert isinstance(reaped, list)
    for instance_id in reaped:
        typer.echo(f'reaped   {instance_id}')
    typer.echo(f'{len(reaped)} dead replica queue(s) reaped')
