"""The raw baseline for bench/api.py: FastAPI + an asyncpg pool, the generated app's queries.

No ORM, no models, no validation of the rows: what the generated app's list and get-one
routes cost at least on this machine. Served by uvicorn from the async variant's venv;
BENCH_DATABASE_URL names the database the generated apps use.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import FastAPI, HTTPException

COLUMNS = "id, title, description, completed, created_at, updated_at"
LIST = f"SELECT {COLUMNS} FROM todo ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
ONE = f"SELECT {COLUMNS} FROM todo WHERE id = $1"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The same pool size as the generated app's default (5 kept, 10 more under load).
    async with asyncpg.create_pool(os.environ["BENCH_DATABASE_URL"], max_size=15) as pool:
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/api/todos")
async def list_todos(limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
    rows = await app.state.pool.fetch(LIST, limit, offset)
    return [dict(row) for row in rows]


@app.get("/api/todos/{todo_id}")
async def get_todo(todo_id: UUID) -> dict[str, Any]:
    row = await app.state.pool.fetchrow(ONE, todo_id)
    if row is None:
        raise HTTPException(status_code=404, detail="Todo not found")
    return dict(row)
