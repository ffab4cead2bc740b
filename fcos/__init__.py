"""fcos-amr: FCOS two-stage pruning for automatic modulation recognition networks."""

__version__ = "0.1.0"
