"""The annotation store (SQLAlchemy models, engine, migrations): issue 3, not built yet."""
