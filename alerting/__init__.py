"""Alerting: rule and SLO files, the evaluator and alert state, the notification pipeline, the alerting API."""
