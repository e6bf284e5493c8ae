"""The shared formats of DESIGN.md, the bottom of the import graph: every package may import it,
it imports nothing of the project.

- `errors`: the project's error classes (what the CLI and the API turn into one sentence).
"""
