"""The one exception type whose message is shown to users as a single line (cause, then fix)."""


class LitMcError(Exception):
    """A problem the user can fix: the CLI prints ``lit-mc: error: <cause>. Fix: <fix>`` and exits non-zero."""

    def __init__(self, cause: str, fix: str) -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause.rstrip('.')}. Fix: {fix}")


class DivergedError(LitMcError):
    """The training loss became NaN or infinite: a run stops, a study records the setting as diverged."""
