"""Analysers that misbehave on purpose, for bench/bench_hostile.py and
tests/test_bounded_memory.py (loaded with --load / analysers=)."""
from analyser import RESP, Analyser


class NeverReads(Analyser):
    """Waits for the server's first byte, which never comes, while the
    client's bytes pile up."""
    name = "never-reads"
    ports = {7777}                      # bench/gen_hostile.py's NEVER_READ_PORT

    def main(self):
        self.read(RESP, 1)
