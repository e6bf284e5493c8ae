"""The shared formats of DESIGN.md, importable from every layer (no project imports below it)."""
