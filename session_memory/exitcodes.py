"""Exit codes, named once (the contract's table)."""

OK = 0
ERROR = 1  # an error, or `check` found the stores unhealthy
USAGE = 2
BUSY = 75  # the store stayed locked: try again
CONFIG = 78  # bad configuration
INTERRUPTED = 130
