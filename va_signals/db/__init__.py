"""PostgreSQL access: where the database is, the connection pool, the schema and its queries."""
