"""The local service stack: install, start, check and stop the real servers."""

from riskwatch.services.base import ServiceStatus
from riskwatch.services.stack import SERVICE_NAMES, Stack

__all__ = ["SERVICE_NAMES", "ServiceStatus", "Stack"]
