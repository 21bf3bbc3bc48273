"""Adapters: every effect on the outside world (the Docker engine, the store, the host lease,
the Voodu controller's HTTP API). Only this package imports docker, sqlite3, socket or http."""
