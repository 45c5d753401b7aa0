"""The one exception type whose message is shown to users as a single line (cause, then fix)."""


class LitMcError(Exception):
    """A problem the user can fix: the CLI prints ``lit-mc: error: <cause>. Fix: <fix>`` and exits non-zero."""

    def __init__(self, cause: str, fix: str) -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause.rstrip('.')}. Fix: {fix}")


class DivergedError(LitMcError):
    """The training loss became NaN or infinite: a run stops, a study records the setting as diverged."""


def check_option(ok: bool, option: str, value: object, expected: str) -> None:
    """Refuse an option value that would fail later (after training started) or silently train nonsense."""
    if not ok:
        raise LitMcError(f"{option}={value} is out of range: it must be {expected}", f"pass {option} {expected}")
