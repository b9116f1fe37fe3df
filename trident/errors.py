"""Errors of the app layer a user can cause (no model, a stage that cannot run): the CLI prints
the message alone, without a traceback."""


class TridentError(Exception):
    """A mistake in what `trident eval`, `pipeline` or `demo` was asked to do; the message names the fix."""
