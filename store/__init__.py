"""PostgreSQL access: a connection pool, the migration runner, one module per aggregate."""
