"""Detectors: each scores accounts from their features and says why.

Add a detector by subclassing :class:`Detector` in a module here and decorating it with
:func:`register`; the shared contract suite (``tests/test_detector_contract.py``) then
runs over it automatically.
"""

from distillguard.detectors import content as _content  # noqa: F401  (registers)
from distillguard.detectors import distribution as _distribution  # noqa: F401  (registers)
from distillguard.detectors import peer_profile as _peer_profile  # noqa: F401  (registers)
from distillguard.detectors.base import (
    DETECTORS,
    Detector,
    DetectorOutput,
    create,
    register,
)

__all__ = ["DETECTORS", "Detector", "DetectorOutput", "create", "register"]
