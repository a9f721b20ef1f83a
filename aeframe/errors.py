"""Errors meant for the user: each carries a one-line message that names the culprit and the fix."""


class AeframeError(Exception):
    """A problem the user can fix; the CLI prints its message alone, without a traceback."""


class UsageProblem(AeframeError):
    """A bad command-line value (name, parameter, device); the CLI exits with status 2."""


class SpecError(UsageProblem):
    """A malformed or unknown technique/dataset/parameter given on the command line."""


class CompositionError(UsageProblem):
    """Techniques that cannot be combined (two of them provide the same part, or none does)."""


class StoreError(AeframeError):
    """The results store cannot be used (not an aeframe store, newer schema, locked)."""
