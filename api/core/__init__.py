"""Cross-cutting pieces of the API: settings, security, database pool, errors, audit."""
