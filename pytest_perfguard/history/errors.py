"""Errors of the history database: one-line messages a user can act on."""

from __future__ import annotations


class HistoryError(Exception):
    """A problem with the history database a user can fix (bad URL, missing file, ...).

    The message is one line and never contains a password.
    """


class SchemaTooNewError(HistoryError):
    """The database was written by a newer pytest-perfguard; it is never modified."""
