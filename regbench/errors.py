"""Errors the CLI reports as one line, without a traceback: mistakes a user can fix (exit code 2) and runs
that failed for a reason that can be said in one line (exit code 1)."""


# A command's exit code when SIGTERM or Ctrl-C stopped it (the shell's 128 + signal number).
EXIT_ON_SIGTERM = 128 + 15
EXIT_ON_INTERRUPT = 128 + 2


class ReportedError(Exception):
    """Printed as one line by the CLI, which then exits with `exit_code`."""

    exit_code = 1


class UserError(ReportedError):
    """A bad input: an unknown name, a wrong type, an out-of-range value, a missing file."""

    exit_code = 2


class TrainingDiverged(ReportedError):
    """The training loss became NaN or infinite: the run stops at once and is marked failed."""


class ParamError(UserError):
    """A bad value for one parameter of a component; the builder adds the config path in front of `key`."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is invalid: {allowed}")

    def at(self, prefix: str) -> "ParamError":
        return ParamError(f"{prefix}.{self.key}", self.value, self.allowed)


def one_line(err: Exception) -> str:
    """A multi-line message (Hydra's, a command's stderr) as one line, without its indented context lines."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.startswith((" ", "\t"))]
    return " ".join(lines) or type(err).__name__


def check(ok: bool, key: str, value, allowed: str) -> None:
    """Raise a ParamError naming `key`, the bad `value` and what is `allowed` unless `ok`."""
    if not ok:
        raise ParamError(key, value, allowed)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_probability(key: str, value) -> None:
    check(_is_number(value) and 0.0 <= value <= 1.0, key, value, "must be a probability in [0, 1]")


def check_positive(key: str, value) -> None:
    check(_is_number(value) and value > 0, key, value, "must be a number > 0")


def check_non_negative(key: str, value) -> None:
    check(_is_number(value) and value >= 0, key, value, "must be a number >= 0")


def check_positive_int(key: str, value) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and value > 0, key, value,
          "must be an integer > 0")


def check_fraction(key: str, value) -> None:
    check(_is_number(value) and 0.0 <= value < 1.0, key, value, "must be a fraction in [0, 1)")
