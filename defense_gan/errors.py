"""The errors the project raises for its users.

Library modules import these from here, not from `config`, so nothing below the CLI needs
the flag definitions.
"""


class DefenseGanError(Exception):
    """An error for the user: `str(err)` is one line naming the flag or file at fault.
    main.py prints it without a traceback and exits with status 2."""


class ConfigError(DefenseGanError):
    """Bad user input: a flag value, a data file or a checkpoint."""


class TrainingError(DefenseGanError):
    """Training cannot go on (for example a NaN loss); checkpoints already saved are intact."""
