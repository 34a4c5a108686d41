"""The one settings object. Every field reads `VIGIL_<NAME>` from the environment.

The README's settings table is generated from the field descriptions here
(`vigil settings --markdown`), so this file is the single source of truth.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    data: Path = Field(Path(".vigil"), description="Data directory (embedded store, write-ahead log, lock).")
    clickhouse_url: str = Field(
        "",
        description="Store URL: `chdb:///path` (embedded) or `http(s)://user:pass@host:8123/db` (server). "
        "Empty means `chdb://<data>/clickhouse`.",
    )
    clickhouse_cluster: str = Field(
        "", description="Cluster name: render migrations as ReplicatedMergeTree + Distributed `ON CLUSTER`."
    )
    host: str = Field("127.0.0.1", description="Address `vigil up` listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port `vigil up` listens on.")
    ingest_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated bearer tokens for `/v1/metrics`. When set, ingest without one is refused.",
    )
    control_token: str = Field(
        "",
        description="Bearer token for the workload's `/control` API. `vigil up` makes one per run when empty; "
        "`vigil workload` without one listens on loopback only.",
    )
    raw_ttl_days: int = Field(
        14,
        ge=1,
        description="Days raw metric rows are kept (a gauge point a minute or more after its series' previous "
        "one is its own 1-minute row and is kept as long as the 1-minute rollups).",
    )
    rollup_1m_ttl_days: int = Field(90, ge=1, description="Days 1-minute rollups are kept.")
    rollup_1h_ttl_days: int = Field(730, ge=1, description="Days 1-hour rollups are kept.")
    batch_rows: int = Field(50_000, ge=1, description="Rows that trigger an insert.")
    batch_wait_ms: int = Field(200, ge=0, description="Longest a point waits for its batch to fill.")
    insert_writers: int = Field(
        2, ge=1, le=16, description="Batches inserted at once, so one batch's insert overlaps the next one's wait."
    )
    queue_rows: int = Field(
        1_000_000, ge=1, description="Rows held in memory awaiting insert; past this ingest answers 429."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest request body, before and after decompression."
    )
    max_attributes: int = Field(128, ge=1, description="Most attributes on one datapoint or resource.")
    max_attribute_key_length: int = Field(256, ge=1, description="Longest attribute key.")
    max_attribute_value_length: int = Field(4096, ge=1, description="Longest attribute value.")
    max_series_per_metric: int = Field(
        100_000, ge=1, description="Distinct series one metric may have; new series past it are refused."
    )
    max_point_age_hours: int = Field(336, ge=1, description="Oldest datapoint timestamp accepted, in hours before now.")
    max_point_future_minutes: int = Field(
        10, ge=0, description="Furthest datapoint timestamp accepted, in minutes after now."
    )
    max_metric_name_length: int = Field(255, ge=1, description="Longest metric name (OpenTelemetry's limit is 255).")
    max_metric_description_length: int = Field(1024, ge=0, description="Longest metric description.")
    max_metric_unit_length: int = Field(63, ge=0, description="Longest metric unit (OpenTelemetry's limit is 63).")
    max_scope_field_length: int = Field(
        1024, ge=1, description="Longest instrumentation scope name or version, and longest schema URL."
    )
    max_exemplars_per_point: int = Field(
        16, ge=0, description="Most exemplars on one datapoint; their attributes obey the attribute limits."
    )
    max_histogram_buckets: int = Field(
        1024, ge=1, description="Most buckets in a histogram datapoint (each side, for an exponential histogram)."
    )
    max_summary_quantiles: int = Field(128, ge=1, description="Most quantiles in a summary datapoint.")
    max_metric_names: int = Field(
        10_000, ge=1, description="Distinct metric names tracked by the series limit; new names past it are refused."
    )
    max_series_total: int = Field(
        1_000_000, ge=1, description="Distinct series across all metrics; new series past it are refused."
    )
    attribute_cache_bytes: int = Field(
        32 * 1024 * 1024, ge=0, description="Memory for shared attribute sets, in bytes; the oldest are evicted."
    )
    idempotency_cache_bytes: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="Memory for recently stored idempotency keys, in bytes (the ledger remembers the rest).",
    )
    wal_stuck_after_s: float = Field(
        60.0,
        gt=0,
        description="Age of an unstored write-ahead-log batch at which `/healthz` reports the collector unhealthy.",
    )
    idempotency_window_hours: int = Field(24, ge=1, description="How long a request's idempotency key is remembered.")
    shutdown_timeout_s: float = Field(
        8.0,
        gt=0,
        description="Grace on SIGTERM: in-flight requests drain (slow uploads get 503), then the collector's queue.",
    )
    ingest_decoders: int = Field(
        2,
        ge=1,
        le=64,
        description="Request bodies decoded and converted at once; the rest wait their turn. A parsed body can "
        "take 30 times its size in memory, and the work holds the interpreter lock, so more buy no speed.",
    )
    max_gzip_members: int = Field(
        64, ge=1, description="Most gzip members (streams one after another) in one request body."
    )
    max_connections: int = Field(
        1024,
        ge=1,
        description="Open HTTP connections; past it a new one gets 503 and is closed. "
        "Held below half the file-descriptor limit, so the store always has descriptors.",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Longest a connection may take to send a request's headers, idle ones included."
    )
    body_timeout_s: float = Field(60.0, gt=0, description="Longest an ingest request may take to send its body (408).")
    log_repeat_limit: int = Field(
        10, ge=1, description="Warnings and errors with the same message logged per interval; the rest are counted."
    )
    log_repeat_interval_s: float = Field(60.0, gt=0, description="The interval of `VIGIL_LOG_REPEAT_LIMIT`.")
    # -- alerting (notify)
    alerting_config: Path | None = Field(
        None,
        description="Notification config YAML (Alertmanager's shape: route, receivers, inhibit_rules, "
        "time_intervals). Unset: a root route with no receiver.",
    )
    webhook_url: str = Field(
        "",
        description="Quick set-up: a webhook receiver (Alertmanager v4 payload, resolved messages too) "
        "on the root route, with or without a config file.",
    )

    # -- alerting (evaluator)
    rules_dir: Path | None = Field(
        None, description="Directory of rule files (`*.yaml`, `*.yml`) evaluated beside the default pack."
    )
    default_rules: bool = Field(True, description="Evaluate the default rule pack for GPU inference fleets.")
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated static bearer tokens for the API (`/api/v1/...`), each acting with the "
        "admin role; for scripts prefer tokens an admin creates at `/admin` (stored hashed, revocable).",
    )
    alert_history_days: int = Field(90, ge=1, description="Days alert transitions (and forgotten alerts) are kept.")
    incident_history_days: int = Field(
        365,
        ge=1,
        description="Days an ended incident (every alert resolved) is kept after its last event; whole incidents "
        "are deleted at start.",
    )

    # --- dashboard and auth (dashboard/) ---
    admin_password: SecretStr = Field(
        SecretStr(""),
        description="Password of the `admin` user, set at each start. Empty: one is generated at first start, "
        "printed once to stderr and stored only as an argon2id hash. Never printed by `vigil settings`.",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 90, description="Hours a login lasts.")
    login_max_failures: int = Field(
        10, ge=1, description="Failed logins per client address, and per user name, within the window; then 429."
    )
    login_window_s: float = Field(900.0, gt=0, description="The window of `VIGIL_LOGIN_MAX_FAILURES`, in seconds.")
    fleet_cache_s: float = Field(
        5.0,
        ge=0,
        le=60,
        description="Seconds the fleet page and `/api/v1/gpus` reuse one read of the fleet (per filters and "
        "range) for every viewer; up to twice that, the old answer is served while one background read "
        "replaces it. Agents report every 10 s. 0 reads the store on every request.",
    )

    # --- history (utilization API, `vigil query`, backfill) ---
    query_max_rows: int = Field(
        100_000, ge=1, description="Most rows one typed query (`POST /api/v1/query`, `vigil query`) may answer."
    )
    query_max_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest answer of one typed query, in bytes (413 past it)."
    )
    query_timeout_s: float = Field(
        10.0, gt=0, description="Longest one typed query may run; the store stops it past this."
    )

    # --- runbooks ---
    runbooks_dir: Path | None = Field(
        None, description="Directory of runbook files (`*.yaml`, `*.yml`) loaded beside the shipped runbooks."
    )
    default_runbooks: bool = Field(True, description="Load the runbooks shipped for the default rule pack.")
    runbook_max_active: int = Field(
        32, ge=1, le=1024, description="Runs going at once (dry runs aside); past it a start answers 429."
    )
    runbook_auto_max_per_hour: int = Field(
        6,
        ge=0,
        description="Fleet-wide circuit breaker: automatic runs (started by alerts) per hour; past it the breaker "
        "opens and on-call is told. 0 turns automatic starts off.",
    )
    runbook_auto_min_interval_s: float = Field(
        600.0, ge=0, description="Least time between two automatic runs of one runbook on one target."
    )
    runbook_history_days: int = Field(
        365,
        ge=1,
        description="Days a finished runbook run's audit trail is kept after its last change; whole runs are "
        "deleted at start.",
    )
    runbook_kube_api_url: str = Field(
        "",
        description="Kubernetes API server for node actions (cordon, drain). Empty: node actions are refused.",
    )
    runbook_kube_token_file: Path | None = Field(
        None, description="File holding the bearer token for `VIGIL_RUNBOOK_KUBE_API_URL`."
    )
    runbook_kube_ca_file: Path | None = Field(
        None, description="CA bundle that signed the Kubernetes API server's certificate."
    )
    runbook_nvml_actions: bool = Field(
        False,
        description="Permit GPU power caps through NVML on this host (needs the rights to change power limits). "
        "Off: such actions are refused.",
    )

    @field_validator("ingest_tokens", "api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("admin_password")
    @classmethod
    def _admin_password_length(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < 12:
            raise ValueError("at least 12 characters (or unset, to have one generated)")
        return value

    @property
    def store_url(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data / 'clickhouse').resolve()}"


def settings_markdown(cls: type[BaseSettings] = Settings) -> str:
    """The README's table of a settings class's variables, from its field descriptions.

    A default computed at run time (a factory other than an empty list or map) is shown as
    "(computed)", so the table does not depend on the machine it was printed on.
    """
    prefix = str(cls.model_config.get("env_prefix", ""))
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in cls.model_fields.items():
        computed = False
        if field.default_factory is not None:
            default: object = field.default_factory()  # type: ignore[call-arg]
            computed = default not in ([], {})
        else:
            default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        if isinstance(default, enum.Enum):
            default = default.value
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        if isinstance(default, dict):
            default = ",".join(f"{k}={v}" for k, v in default.items())
        shown = f"`{default}`" if default not in ("", None) else "(empty)"
        if computed:
            shown = "(computed)"
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{prefix}{name.upper()}` | {shown} | {description} |")
    return "\n".join(lines) + "\n"
