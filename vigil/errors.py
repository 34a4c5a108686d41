"""Errors every service's command line raises for bad input; `vigil` prints them as `vigil: error: ...`."""


class CliError(Exception):
    """Bad flags or settings: the message names the flag or setting and what to do."""
