"""Errors raised by the core contracts. Every one names what is wrong."""

from __future__ import annotations


class GaiaError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidTransition(GaiaError):
    """A job was asked to move between two states the state machine does not connect."""


class PayloadError(GaiaError):
    """A payload does not match its task's schema; the message names the bad field."""


class CorruptJob(GaiaError):
    """A stored job record could not be decoded (bad bytes in a backend)."""


class LeaseLost(GaiaError):
    """The caller no longer holds the job's lease (reclaimed after expiry, or the job cancelled).

    A stale holder's complete/fail/heartbeat raises this and changes nothing (fencing)."""


class DuplicateJob(GaiaError, ValueError):
    """A job id the queue already holds (in any status), or one repeated in a batch. Nothing of
    the refused batch is stored. (A ValueError too, as these refusals always were.)"""


class JobNotFound(GaiaError):
    """No job with this id exists in the queue."""


class UnknownTask(GaiaError):
    """No task is registered for a job type."""


class QueueClosed(GaiaError):
    """The queue was closed and accepts no more calls."""
