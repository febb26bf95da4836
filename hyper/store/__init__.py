"""The store: every record a host keeps. One protocol, one implementation per backend."""

from hyper.store.base import JobFilter, JobRecord, LogEntry, NewJob, Resource, Store, WorkerRecord

__all__ = ["JobFilter", "JobRecord", "LogEntry", "NewJob", "Resource", "Store", "WorkerRecord"]
