"""The leader's dashboard: HTTP API, login and roles, live updates, pages (docs/api.md)."""
