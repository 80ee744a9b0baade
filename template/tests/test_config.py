"""Settings read from the environment."""

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
