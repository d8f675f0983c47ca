"""Typed errors. A ``UserError`` is the user's mistake: the CLI prints one line and exits 2."""

from __future__ import annotations


class EpiSpineageError(Exception):
    """Base class of every error this package raises on purpose."""


class UserError(EpiSpineageError):
    """Bad input from the user (a missing file, a wrong column, a bad option). Exit code 2."""


class ImageReadError(UserError):
    """An image could not be read (not an image, truncated, unsupported). Names the file."""

    def __init__(self, source: str, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class ValidationError(UserError):
    """A table failed validation; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], what: str = "input"):
        self.problems = list(problems)
        head = f"{what} failed validation ({len(self.problems)} problem(s))"
        super().__init__(head + ": " + "; ".join(self.problems[:10]))


class AnalysisNotPossible(EpiSpineageError):
    """An analysis cannot run on these data (an empty group, no events, a constant exposure).

    The report skips the step and states the reason in its data-quality section; any other exception
    inside a report step is a programming error and propagates.
    """
