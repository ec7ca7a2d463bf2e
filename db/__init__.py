"""The annotation store: SQLAlchemy models (``db.models``), engines and sessions (``db.engine``) and Alembic
migrations (``db.migrations.upgrade(url)``). Imports neither ``annotation`` nor ``sr_engine``."""
