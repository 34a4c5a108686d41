from pathlib import Path

import pytest

from vigil.settings import Settings, settings_markdown


def test_env_prefix_and_token_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_INGEST_TOKENS", " a1 ,b2,, ")
    monkeypatch.setenv("VIGIL_PORT", "9090")
    settings = Settings()
    assert settings.ingest_tokens == ["a1", "b2"]
    assert settings.port == 9090


def test_default_store_url_is_embedded_under_data_dir(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path)
    assert settings.store_url == f"chdb://{tmp_path.resolve() / 'clickhouse'}"
    assert Settings(clickhouse_url="http://ch:8123/db").store_url == "http://ch:8123/db"


def test_readme_settings_table_matches_the_settings_object() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert settings_markdown() in readme, "README settings table is stale: run `vigil settings --markdown`"
