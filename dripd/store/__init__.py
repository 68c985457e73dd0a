"""Durable state: the schema, its migrations, and the engine that opens it."""
