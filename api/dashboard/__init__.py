"""Server-rendered dashboard (no template engine: escaped f-strings and inline SVG)."""
