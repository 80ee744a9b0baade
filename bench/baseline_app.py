"""The raw baseline for bench/: FastAPI + an asyncpg pool, the generated app's queries.

No ORM, no models, no validation of the rows: what the generated app's routes cost at least
on this machine. Served by uvicorn from the async variant's venv; BENCH_DATABASE_URL names
the database the generated apps use. Every route is one statement. With
BENCH_POOL_RESET=off (bench/latency.py) the pool skips asyncpg's reset query on release,
so each request is exactly one round trip; by default (bench/api.py) the pool works as
asyncpg documents it.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from fastapi import FastAPI, HTTPException

COLUMNS = "id, title, description, completed, created_at, updated_at"
LIST = f"SELECT {COLUMNS} FROM todo ORDER BY id DESC LIMIT $1 OFFSET $2"
ONE = f"SELECT {COLUMNS} FROM todo WHERE id = $1"
INSERT = (
    "INSERT INTO todo (id, title, description, completed, created_at, updated_at)"
    " SELECT id, title, description, false, now(), now()"
    " FROM unnest($1::uuid[], $2::varchar[], $3::varchar[]) AS t(id, title, description)"
    f" RETURNING {COLUMNS}"
)
UPDATE = f"UPDATE todo SET title = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
TOGGLE = (
    "UPDATE todo SET completed = NOT completed, updated_at = now() WHERE id = $1"
    f" RETURNING {COLUMNS}"
)
DELETE = "DELETE FROM todo WHERE id = $1 RETURNING id"


async def no_reset(_connection: asyncpg.Connection) -> None:
    """Skip the reset query: nothing here leaves session state behind."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The same pool size as the generated app's default (5 kept, 10 more under load).
    options: dict[str, Any] = {"max_size": 15}
    if os.environ.get("BENCH_POOL_RESET") == "off":
        options["reset"] = no_reset
    async with asyncpg.create_pool(os.environ["BENCH_DATABASE_URL"], **options) as pool:
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/api/todos")
async def list_todos(limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
    rows = await app.state.pool.fetch(LIST, limit, offset)
    return [dict(row) for row in rows]


@app.get("/api/todos/{todo_id}")
async def get_todo(todo_id: UUID) -> dict[str, Any]:
    return found(await app.state.pool.fetchrow(ONE, todo_id))


def found(row: Any) -> dict[str, Any]:
    if row is None:
        raise HTTPException(status_code=404, detail="Todo not found")
    return dict(row)


@app.post("/api/todos", status_code=201)
async def create_todo(data: dict[str, Any]) -> dict[str, Any]:
    rows = await app.state.pool.fetch(INSERT, [uuid4()], [data["title"]], [data.get("description")])
    return dict(rows[0])


@app.post("/api/todos/bulk", status_code=201)
async def create_todos(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [uuid4() for _ in items]
    titles = [item["title"] for item in items]
    descriptions = [item.get("description") for item in items]
    rows = await app.state.pool.fetch(INSERT, ids, titles, descriptions)
    return [dict(row) for row in rows]


@app.patch("/api/todos/{todo_id}")
async def update_todo(todo_id: UUID, data: dict[str, Any]) -> dict[str, Any]:
    return found(await app.state.pool.fetchrow(UPDATE, todo_id, data["title"]))


@app.post("/api/todos/{todo_id}/toggle")
async def toggle_todo(todo_id: UUID) -> dict[str, Any]:
    return found(await app.state.pool.fetchrow(TOGGLE, todo_id))


@app.delete("/api/todos/{todo_id}", status_code=204)
async def delete_todo(todo_id: UUID) -> None:
    found(await app.state.pool.fetchrow(DELETE, todo_id))
