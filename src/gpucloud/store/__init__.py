"""Adapters to the database: SQLAlchemy models, sessions, migrations and repositories."""
