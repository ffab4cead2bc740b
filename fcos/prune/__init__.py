"""Pruning methods (FCOS stages, channel and layer baselines) and the shared surgery helpers."""
