"""Settings and database URL handling."""

import pytest

from app.config import Settings
from app.db import DRIVERS, database_url


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://user:secret@db.example.com/app",
        "postgresql://user:secret@db.example.com/app",
        f"{DRIVERS['postgresql']}://user:secret@db.example.com/app",
    ],
)
def test_postgres_urls_get_this_projects_driver(raw: str) -> None:
    url = database_url(raw)

    assert url.drivername == DRIVERS["postgresql"]
    assert url.host == "db.example.com"
    assert url.password == "secret"


def test_sqlite_urls_get_this_projects_driver() -> None:
    assert database_url("sqlite:///./app.db").drivername == DRIVERS["sqlite"]


def test_unsupported_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="must start with postgresql:// or sqlite:///"):
        database_url("mysql://user@localhost/app")


def test_a_foreign_driver_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="driver is chosen for you"):
        database_url("postgresql+pg8000://user@localhost/app")


def test_cors_origins_accept_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "http://localhost:3000, https://app.example.com,")

    assert Settings().cors_origins == ["http://localhost:3000", "https://app.example.com"]


def test_empty_cors_origins_turn_cors_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "")

    assert Settings().cors_origins == []
