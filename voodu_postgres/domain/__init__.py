"""The domain: pure values and decisions (spec, naming, bucket keys, pod specs, backup ids and
metadata, physical-restore rules). Nothing here does I/O; every other layer may import it."""
