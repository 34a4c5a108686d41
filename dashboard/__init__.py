"""The dashboard: server-rendered pages (Jinja2, uPlot charts served from the package), the JSON API
under `/api/v1/`, and auth (users, roles, sessions, API tokens, CSRF) that every service's routes use
through `vigil.access`."""
