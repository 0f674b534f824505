"""The toolkit's own errors: bad input a user can fix (a config, a data set, a run folder).

The CLI prints them as one line naming the file, the record and the reason, and exits with
status 2; ``gfl-repro --debug`` shows the traceback instead.
"""


class ToolkitError(Exception):
    """An error in what the user gave the toolkit, with a message that says how to fix it."""
