from pathlib import Path

from vigil.store.schema import SchemaContext, render_sql

ROOT = Path(__file__).parents[4]


def test_cluster_ddl_in_deploy_is_what_the_migrations_render() -> None:
    assert (ROOT / "deploy/clickhouse/cluster.sql").read_text() == render_sql(SchemaContext(cluster="vigil")), (
        "regenerate: vigil migrate --print --cluster vigil > deploy/clickhouse/cluster.sql"
    )
