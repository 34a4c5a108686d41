"""Alerting: not built yet. Rules, SLO burn rates, alert state, routing and receivers will live here."""
