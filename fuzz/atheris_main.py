"""One fuzz target under atheris (coverage-guided, libFuzzer's engine).

    python -m fuzz.atheris_main TARGET [libFuzzer options] CORPUS_DIR

The project's Python code (analyser, protocols, ringbuf's Python parts,
fuzz; the modules the build also compiles run as source here) is
instrumented as it is imported, so libFuzzer's `cov:` counts the
edges of that code.  The compiled modules run uninstrumented (fuzz/README.md
says why); the targets of compiled code (decode, pcap_reader) also parse
each input with dpkt, instrumented too, so that inputs reaching new
structure (another link type, a tunnel, a pcapng block type) count as new
coverage.
Any exception out of the target is a crash: libFuzzer writes the input to
its -artifact_prefix and exits.
"""
import os
import sys

import atheris

# The protocol and runtime modules the build compiles from Python run as
# Python here (analyser/compiled.py), so that they are instrumented.
os.environ.setdefault("ANALYSER_FROM_SOURCE", "1")

INSTRUMENTED = ["analyser", "protocols", "ringbuf", "fuzz", "dpkt"]


def main() -> None:
    name = sys.argv[1]
    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz.targets import TARGETS
        one = TARGETS[name].setup()
    atheris.Setup([sys.argv[0], *sys.argv[2:]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
