"""Errors raised by capture sources (source → ring) for input they cannot read.

Each carries one human-readable line (the file name and what is wrong with it),
so the CLI can print it as is: bad input ends a run with a message, never a
traceback.
"""


class CaptureFileError(Exception):
    """A trace file that cannot be opened or is not a readable pcap/pcapng file."""
