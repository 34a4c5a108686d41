"""Web pages, JSON API, runbook engine and auth: built by its issue."""
