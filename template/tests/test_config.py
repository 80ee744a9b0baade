"""Settings read from the environment."""

import logging
from pathlib import Path

import pytest

from app.config import Settings


def test_cors_origins_accept_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "http://localhost:3000, https://app.example.com,")

    assert Settings().cors_origins == ["http://localhost:3000", "https://app.example.com"]


def test_empty_cors_origins_turn_cors_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "")

    assert Settings().cors_origins == []


@pytest.mark.parametrize("name", ["DATABASE_URL_UNPOOLED", "DIRECT_URL"])
def test_the_direct_url_has_both_usual_names(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    url = "postgresql://u:p@ep-x.eu-central-1.aws.neon.tech/neondb?sslmode=require"
    monkeypatch.setenv(name, url)

    assert Settings().database_url_unpooled == url


POSTGRES = "postgresql://u:p@ep-x.eu-central-1.aws.neon.tech/neondb?sslmode=require"
DIRECT = POSTGRES.replace("ep-x", "ep-x-direct")


def test_migrations_use_the_direct_url_of_a_postgresql_database() -> None:
    settings = Settings(database_url=POSTGRES, database_url_unpooled=DIRECT)

    assert settings.migration_url == DIRECT
    assert Settings(database_url=POSTGRES).migration_url == POSTGRES


def test_a_sqlite_database_ignores_a_direct_url(caplog: pytest.LogCaptureFixture) -> None:
    # One process, one database: the direct URL would be another database's.
    settings = Settings(database_url="sqlite:///./local.db", database_url_unpooled=DIRECT)

    with caplog.at_level(logging.WARNING):
        assert settings.migration_url == "sqlite:///./local.db"
    assert "DATABASE_URL_UNPOOLED (DIRECT_URL) is ignored" in caplog.text


def test_the_suite_never_reads_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # conftest.py turns `.env` off for the whole run: it may name a real database.
    (tmp_path / ".env").write_text(f"DATABASE_URL={POSTGRES}\nDIRECT_URL={DIRECT}\n")
    monkeypatch.chdir(tmp_path)

    settings = Settings()

    assert (settings.database_url, settings.database_url_unpooled) == ("sqlite:///./app.db", None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_POOL_SIZE", "0"),
        ("DATABASE_CONNECT_RETRIES", "9"),
        ("DATABASE_POOL_TIMEOUT", "0"),
    ],
)
def test_pool_settings_are_checked(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValueError, match=name.lower()):
        Settings()
