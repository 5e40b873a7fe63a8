"""The error of ``leadflow policy evaluate`` and ``leadflow policy snapshot`` (and
of the snapshot read ``recommend`` shares): input the command cannot use.

:func:`app.cli_policy.main` prints it as one line, ``leadflow policy COMMAND:
message``, and exits 2. It has a module of its own so that the subcommands'
modules can raise it and the dispatcher catch it without importing each other.
"""

from __future__ import annotations


class UsageError(Exception):
    """Input the command cannot use; the message says why."""
