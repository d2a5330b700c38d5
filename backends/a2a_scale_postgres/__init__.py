"""The PostgreSQL backend plugin for a2a-scale (asyncpg, LISTEN/NOTIFY)."""
