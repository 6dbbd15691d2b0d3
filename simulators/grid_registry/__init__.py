"""Grid registry (网格化管理) simulator: a relational database built with SQLAlchemy DDL."""
