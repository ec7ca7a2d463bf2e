"""The errors the services raise. All subclass ``ValueError``: bad input is refused with a clear message and
the caller's transaction is left untouched by the failed call (nothing is written before validation passes)."""

from __future__ import annotations


class AnnotationError(ValueError):
    """Base of every refusal by the annotation services."""


class NotFound(AnnotationError):
    """An id or name that does not exist (an unknown rater, project, image, assignment)."""


class InvalidInput(AnnotationError):
    """Input that cannot be used as given: a non-image, a truncated PNG, k wrong picks, an unsafe zip."""


class PermissionDenied(AnnotationError):
    """The acting account may not do this (another rater's assignment, a rater excluding raters)."""


class LeaseExpired(AnnotationError):
    """The assignment's lease ran out and its slot went to someone else."""


class Conflict(AnnotationError):
    """The request contradicts the stored state: a different submission for an already submitted assignment,
    a revision after the window closed, a skip of a submitted task."""
