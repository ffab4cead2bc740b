"""Channel groups and probe points of any network, found from its dataflow on an example input.

``recorder`` runs the network once and records its tensor operations; ``channels`` derives the
coupled channel groups (the structure of fcos.prune.groups) from them; ``stages`` finds the
residual blocks and sequential stages LaCD probes and may remove.
"""
