"""Alembic migrations of the connector database (a package so that wheels ship them)."""
