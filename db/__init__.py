"""The annotation store: SQLAlchemy models (``db.models``), engines and sessions (``db.engine``) and Alembic
migrations (``db.migrations.upgrade(url)``, ``create_schema`` for tests). ``db.migrations`` depends on
``db.engine``, not the other way round. Imports neither ``annotation`` nor ``sr_engine``."""
