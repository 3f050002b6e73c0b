"""Writers for every scan output of CONTRACT §2."""

from distillguard.outputs.write import write_outputs

__all__ = ["write_outputs"]
