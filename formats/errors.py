"""The project's own errors: one base class, one subclass for bad input.

Why here: every layer raises them and `api` turns them into one sentence and an exit code
(2 for bad input or usage, 1 for a failure while running), so they must sit below every layer.
Subclasses also derive from the built-in class a caller would naturally catch (ValueError for
bad input), so code written against the built-ins keeps working.
"""

from __future__ import annotations


class ProjectError(Exception):
    """A failure the project foresaw: its message is one sentence meant for the user."""

    exit_code = 1


class InputError(ProjectError, ValueError):
    """The input (a file, an option, a bundle, a sketch) is unusable; nothing was changed."""

    exit_code = 2
