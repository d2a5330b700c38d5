"""`ListTasks` queries of `DynamoDBTaskStore` on its GSIs, and partition reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from a2a.types.a2a_pb2 import ListTasksResponse, Task

from a2a_scale.tasks import ListQuery, cursor_for
from a2a_scale_aws import items

_BATCH_WRITE = 25


def list_query_args(
    table_name: str,
    where: tuple[str, str, str, str],
    query: ListQuery,
    low: str | None,
    high: str | None,
    *,
    now: int,
) -> dict[str, Any]:
    """The `Query` arguments of a `ListTasks` page on a GSI.

    Args:
        table_name: The table.
        where: The index, its partition and sort key attributes, and the
            partition to read.
        query: The parsed request (its state filter is applied here).
        low: The lowest sort key to read, if any.
        high: The highest sort key to read, if any.
        now: The current time in seconds; expired tasks are filtered out.
    """
    index, pk_attr, sk_attr, partition = where
    names = {'#pk': pk_attr, '#exp': items.TTL_ATTRIBUTE}
    if low is not None or high is not None:
        names['#sk'] = sk_attr
    values: dict[str, Any] = {
        ':pk': {'S': partition},
        ':now': {'N': str(now)},
    }
    key = '#pk = :pk'
    if low is not None and high is not None:
        key += ' AND #sk BETWEEN :low AND :high'
    elif high is not None:
        key += ' AND #sk <= :high'
    elif low is not None:
        key += ' AND #sk >= :low'
    if low is not None:
        values[':low'] = {'S': low}
    if high is not None:
        values[':high'] = {'S': high}
    filters = ['(attribute_not_exists(#exp) OR #exp > :now)']
    if query.state:
        names['#st'] = 'st'
        values[':st'] = {'N': str(int(query.state))}
        filters.append('#st = :st')
    return {
        'TableName': table_name,
        'IndexName': index,
        'KeyConditionExpression': key,
        'FilterExpression': ' AND '.join(filters),
        'ExpressionAttributeNames': names,
        'ExpressionAttributeValues': values,
        'ScanIndexForward': False,
    }


async def count_items(db: Any, args: dict[str, Any]) -> int:
    """Counts the items a `Query` with `args` matches, page by page."""
    args = {**args, 'Select': 'COUNT'}
    total = 0
    while True:
        response = await db.query(**args)
        total += int(response.get('Count', 0))
        if 'LastEvaluatedKey' not in response:
            return total
        args['ExclusiveStartKey'] = response['LastEvaluatedKey']


async def list_page(
    db: Any,
    table_name: str,
    owner: str,
    query: ListQuery,
    start: tuple[str | None, bool],
    *,
    decode: Callable[[dict[str, Any]], Task],
    now: int,
) -> ListTasksResponse:
    """One page of an owner's tasks, newest first, with the total count.

    Args:
        db: The DynamoDB client.
        table_name: The table.
        owner: The owner whose tasks are listed.
        query: The parsed request.
        start: The sort key the page starts at (None: the newest), and
            whether that key itself is included.
        decode: Turns a task item into a `Task`.
        now: The current time in seconds; expired tasks are filtered out.
    """
    if query.context_id:
        index, pk_attr, sk_attr = items.BY_CONTEXT, items.GSI2_PK, items.GSI2_SK
        partition = items.context_partition(owner, query.context_id)
    else:
        index, pk_attr, sk_attr = items.BY_OWNER, items.GSI1_PK, items.GSI1_SK
        partition = items.owner_part(owner)
    low = (
        items.list_sort_key(True, query.timestamp_after_ns, '')
        if query.timestamp_after_ns is not None
        else None
    )
    high, inclusive = start
    where = (index, pk_attr, sk_attr, partition)
    total = await count_items(
        db, list_query_args(table_name, where, query, low, None, now=now)
    )
    args = list_query_args(table_name, where, query, low, high, now=now)
    page: list[Task] = []
    while len(page) <= query.page_size:
        response = await db.query(**args, Limit=query.page_size + 1)
        for item in response.get('Items', []):
            if not inclusive and high is not None and item[sk_attr]['S'] == high:
                continue
            page.append(decode(item))
        if 'LastEvaluatedKey' not in response:
            break
        args['ExclusiveStartKey'] = response['LastEvaluatedKey']
    token = (
        cursor_for(page[query.page_size - 1]) if len(page) > query.page_size else None
    )
    return ListTasksResponse(
        tasks=page[: query.page_size],
        next_page_token=token or '',
        total_size=total,
        page_size=query.page_size,
    )


async def delete_partition(db: Any, table_name: str, task_id: str) -> None:
    """Deletes every item left in a task's partition (events, push configs)."""
    keys: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        'TableName': table_name,
        'KeyConditionExpression': 'pk = :pk',
        'ExpressionAttributeValues': {':pk': {'S': items.task_pk(task_id)}},
        'ProjectionExpression': 'pk, sk',
    }
    while True:
        page = await db.query(**kwargs)
        keys.extend(page.get('Items', []))
        if 'LastEvaluatedKey' not in page:
            break
        kwargs['ExclusiveStartKey'] = page['LastEvaluatedKey']
    for start in range(0, len(keys), _BATCH_WRITE):
        requests = [
            {'DeleteRequest': {'Key': key}}
            for key in keys[start : start + _BATCH_WRITE]
        ]
        pending: dict[str, Any] = {table_name: requests}
        while pending:
            response = await db.batch_write_item(RequestItems=pending)
            pending = response.get('UnprocessedItems') or {}
