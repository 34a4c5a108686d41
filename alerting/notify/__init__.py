"""The notification pipeline, in the manner of Alertmanager's notify/: route → group → inhibit → silence →
mute → dedup → send → record, one module per stage, and the receivers under `receivers/`.

Imported lazily so `alerting.config` can use the stage modules (mute) without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from alerting.config import AlertingConfig
    from alerting.notify.pipeline import Pipeline
    from alerting.notify.silence import SilenceStore as SilenceStore
    from vigil.store import Store

__all__ = ["Pipeline", "SilenceStore", "build_notifier"]


def build_notifier(
    config: AlertingConfig, store: Store | None, registry: CollectorRegistry | None, clock: Callable[[], float]
) -> Pipeline:
    """The `Notifier` the evaluator hands alerts to; `clock` returns unix seconds (float)."""
    from alerting.notify.pipeline import build_notifier as build

    return build(config, store, registry, clock)


def __getattr__(name: str) -> Any:
    if name == "Pipeline":
        from alerting.notify.pipeline import Pipeline

        return Pipeline
    if name == "SilenceStore":
        from alerting.notify.silence import SilenceStore

        return SilenceStore
    raise AttributeError(name)
