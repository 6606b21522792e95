"""The registry: SQLAlchemy rows inside, plain records outside."""

from mfstore.registry.records import (
    DatasetRecord,
    LayerVersion,
    NetworkVersion,
    StreamRecord,
    parse_ref,
)
from mfstore.registry.registry import Registry

__all__ = ["DatasetRecord", "LayerVersion", "NetworkVersion", "Registry", "StreamRecord",
           "parse_ref"]
