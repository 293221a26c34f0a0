"""One exception type for every mistake a user can make (bad file, bad class, bad option)."""


class UserError(Exception):
    """A problem with the user's input, described in one clear sentence.

    The CLI prints the message and exits with code 2; the dashboard shows it with ``st.error``.
    """


def check_share(value, what: str) -> None:
    """``value`` must be a number in [0, 1] (a share); else one sentence naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"{what} must be a share in [0, 1], got {value!r}.")


def check_whole(value, what: str, least: int = 0) -> None:
    """``value`` must be a whole number of at least ``least``; else one sentence naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UserError(f"{what} must be a whole number of at least {least}, got {value!r}.")


def check_positive(value, what: str) -> None:
    """``value`` must be a finite number above 0; else one sentence naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise UserError(f"{what} must be a number above 0, got {value!r}.")
