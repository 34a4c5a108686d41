import socket
from pathlib import Path

import pytest

from gpu_agent.settings import AgentSettings
from vigil.cli import settings_tables
from vigil.settings import Settings, settings_markdown
from workload.settings import WorkloadSettings


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


def test_readme_settings_tables_match_the_settings_classes() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    for cls in (Settings, WorkloadSettings, AgentSettings):
        assert settings_markdown(cls) in readme, "README settings tables are stale: run `vigil settings --markdown`"
    assert settings_tables() in readme


def test_a_computed_default_is_not_printed_as_this_machines_value() -> None:
    table = settings_markdown(AgentSettings)
    assert "| `VIGIL_AGENT_HOSTNAME` | (computed) |" in table
    assert socket.gethostname() not in table
