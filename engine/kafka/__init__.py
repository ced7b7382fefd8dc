"""Kafka: a worker with exactly-once effect, dead letters, an event publisher.

Also the launcher of the Tansu test broker. See ``docs/kafka.md``.
"""

from engine.core.errors import (
    AlreadyReplayed,
    BrokerUnavailable,
    DeadLetterNotFound,
    MappingError,
    MappingLoadError,
)
from engine.kafka.broker import TansuBroker
from engine.kafka.publisher import Publisher
from engine.kafka.worker import Mapping, Message, Worker, WorkerStats, load_mapping

__all__ = [
    "AlreadyReplayed",
    "BrokerUnavailable",
    "DeadLetterNotFound",
    "Mapping",
    "MappingError",
    "MappingLoadError",
    "Message",
    "Publisher",
    "TansuBroker",
    "Worker",
    "WorkerStats",
    "load_mapping",
]
