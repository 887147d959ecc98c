"""Lightning callbacks that live in the package so they import when circuitft is installed."""

from circuitft.callbacks.circuit import CircuitCallback
from circuitft.callbacks.forgetting import ForgettingCurve
from circuitft.callbacks.records import CircuitRecord, RecordLog

__all__ = ["CircuitCallback", "CircuitRecord", "ForgettingCurve", "RecordLog"]
