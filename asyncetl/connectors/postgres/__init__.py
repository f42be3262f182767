"""PostgreSQL: table source, sinks, checkpoint and dead-letter stores (asyncpg)."""
