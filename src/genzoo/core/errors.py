"""One exception type for user-facing errors: the message says what to do."""


class GenzooError(Exception):
    """A problem the user can fix (bad input, unknown name, missing file)."""


def unknown(kind: str, name: str, valid) -> GenzooError:
    valid = sorted(valid)
    return GenzooError(f"unknown {kind} {name!r}; choose one of: {', '.join(valid)}")
