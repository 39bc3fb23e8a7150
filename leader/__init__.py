"""The leader: broker management, deployment, ingest, the web app and the `pios` CLI."""
