"""The one exception type for mistakes a user can fix; the CLI prints it as one line and exits with code 2."""


class UserError(Exception):
    """A bad input: an unknown name, a wrong type, an out-of-range value, a missing file."""

    exit_code = 2


def check(ok: bool, key: str, value, allowed: str) -> None:
    """Raise a UserError naming `key`, the bad `value` and what is `allowed` unless `ok`."""
    if not ok:
        raise UserError(f"{key}={value!r} is invalid: {allowed}")
