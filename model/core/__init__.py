"""The device core: per-function slices and the parts they share (see :mod:`model.core.device_core`)."""

from model.core.device_core import DeviceCore
from model.core.slice import FunctionSlice

__all__ = ["DeviceCore", "FunctionSlice"]
