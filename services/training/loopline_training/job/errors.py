"""Errors a job reports as its failure reason (the message is shown to users as it is)."""


class JobError(Exception):
    """An expected failure: bad data, a failed gate, an upstream refusal. Its message says what and why."""


class Terminated(BaseException):
    """Raised in the job's main thread on SIGTERM/SIGINT."""
