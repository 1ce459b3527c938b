"""Dagster definitions, one folder per source system. Thin: the work happens in clients, domain and storage."""
