"""riskwatch: IoT risk monitoring for the off-site safety supervision of enterprises."""

__version__ = "0.1.0"
