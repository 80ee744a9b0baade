"""The generated async app on SQLAlchemy's own async pool, for bench/api.py.

Target `async plain pool`: the same app as `async` with `FairAsyncQueuePool` (app/pool.py)
swapped for `AsyncAdaptedQueuePool`, SQLAlchemy's default, so both pools are measured in
the same run. Served from the async variant's directory with bench/ on PYTHONPATH.
"""

from app import db
from app.main import create_app
from sqlalchemy.pool import AsyncAdaptedQueuePool

db.FairAsyncQueuePool = AsyncAdaptedQueuePool  # type: ignore[misc]
app = create_app()
