"""The registry: SQLAlchemy rows inside, plain records outside."""

from mfstore.registry.records import (
    DatasetRecord,
    ExportRecord,
    LayerVersion,
    NetworkVersion,
    StreamRecord,
    parse_ref,
)
from mfstore.registry.registry import Registry

__all__ = ["DatasetRecord", "ExportRecord", "LayerVersion", "NetworkVersion", "Registry",
           "StreamRecord", "parse_ref"]
