"""Jinja context for sqlfluff's jinja templater (see .sqlfluff): stand-ins for dbt's namespaces."""
