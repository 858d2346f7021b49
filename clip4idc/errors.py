"""One exception type for every user-facing problem, so the CLI and app can show one clear line."""


class Clip4idcError(Exception):
    """A problem with user input (file, image, JSON, checkpoint) described in one line.

    The message names the file and what is wrong; the CLI prints it as ``error: <message>``.
    """


def fail(path: object, problem: str) -> Clip4idcError:
    """Build the standard one-line error ``<path>: <problem>``."""
    return Clip4idcError(f"{path}: {problem}")
