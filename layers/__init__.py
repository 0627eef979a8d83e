"""The data: SQLAlchemy models, repositories and the embedded PostGIS cluster."""
