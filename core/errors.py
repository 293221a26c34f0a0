"""One exception type for every mistake a user can make (bad file, bad class, bad option)."""


class UserError(Exception):
    """A problem with the user's input, described in one clear sentence.

    The CLI prints the message and exits with code 2; the dashboard shows it with ``st.error``.
    """
