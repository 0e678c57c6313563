"""Settings come from GDC_* variables (and REDIS_URL); docs/settings.md is generated from them."""
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, settings_table

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_environment_is_read(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/3")
    monkeypatch.setenv("GDC_API_KEYS", "alpha, beta,")
    monkeypatch.setenv("GDC_RETRY_BACKOFF", "2,8")
    monkeypatch.setenv("GDC_MAX_PIXELS", "1000")
    monkeypatch.setenv("GDC_ALLOW_PRIVATE_CALLBACKS", "true")
    settings = Settings()
    assert settings.redis_url == "redis://example:6379/3"
    assert settings.api_keys == ["alpha", "beta"]
    assert settings.retry_backoff == [2, 8]
    assert settings.max_pixels == 1000
    assert settings.allow_private_callbacks is True


def test_gdc_prefixed_redis_url_works_too(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("GDC_REDIS_URL", "redis://other:6379/0")
    assert Settings().redis_url == "redis://other:6379/0"


def test_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("GDC_MAX_CLASSES", "1")
    with pytest.raises(ValidationError, match="max_classes"):
        Settings()


def test_docs_table_matches_the_settings_class():
    assert DOCS.read_text() == settings_table(), "regenerate: python -m service.settings > docs/settings.md"
    for name in Settings.model_fields:
        assert f"GDC_{name.upper()}" in DOCS.read_text()
