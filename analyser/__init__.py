"""A real-time passive protocol analyser framework.

The compiled engine (ringbuf/, analyser/decode, analyser/flows,
analyser/engine) turns packets into connection records; the Python layer
around it writes logs and runs the CLI.
"""
__version__ = "0.1.0"
