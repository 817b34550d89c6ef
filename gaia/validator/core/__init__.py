"""Core contracts: pure data and interfaces, standard library only, no I/O at import.

Job (envelope and state machine), Task (a registered job type), TaskContext (what a handler
sees), outcomes and TaskResult, RetryPolicy, the Queue and Worker contracts, and the lifecycle
rules every backend applies.
"""

from gaia.validator.core.context import TaskContext
from gaia.validator.core.errors import (
    CorruptJob,
    DuplicateJob,
    GaiaError,
    InvalidTransition,
    JobNotFound,
    LeaseLost,
    PayloadError,
    QueueClosed,
    UnknownTask,
)
from gaia.validator.core.job import Job, JobError, Progress, new_job
from gaia.validator.core.json_value import JSONObject, JSONValue
from gaia.validator.core.outcomes import (
    Errored,
    Fail,
    NotReady,
    Outcome,
    PermanentError,
    Retry,
    RetryableError,
    Success,
    TaskResult,
)
from gaia.validator.core.queue import Lease, Queue, QueueStats
from gaia.validator.core.retry import RetryPolicy
from gaia.validator.core.status import ACTIVE_STATUSES, TERMINAL_STATUSES, JobStatus
from gaia.validator.core.task import ExecutorKind, Task, TaskRegistry
from gaia.validator.core.worker import Worker

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "CorruptJob",
    "DuplicateJob",
    "Errored",
    "ExecutorKind",
    "Fail",
    "GaiaError",
    "InvalidTransition",
    "JSONObject",
    "JSONValue",
    "Job",
    "JobError",
    "JobNotFound",
    "JobStatus",
    "Lease",
    "LeaseLost",
    "NotReady",
    "Outcome",
    "PayloadError",
    "PermanentError",
    "Progress",
    "Queue",
    "QueueClosed",
    "QueueStats",
    "Retry",
    "RetryPolicy",
    "RetryableError",
    "Success",
    "Task",
    "TaskContext",
    "TaskRegistry",
    "TaskResult",
    "UnknownTask",
    "Worker",
    "new_job",
]
