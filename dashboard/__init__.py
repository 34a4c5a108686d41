"""The dashboard: not built yet. Pages, their JSON API and login will live here."""
