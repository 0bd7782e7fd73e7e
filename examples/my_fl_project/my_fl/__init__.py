"""A research project of its own that plugs into fedlab from outside: nothing here is in fedlab.

Each module is one plug-in; ``conf/`` beside this package selects them by ``_target_``."""
