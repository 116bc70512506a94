"""Analysers that parse nothing, for bench/bench_runtime_floor.py (loaded
with --load): what the runtime alone costs an analysed HTTP connection."""
from analyser import ORIG, Analyser, Signature


class ReturnsAtOnce(Analyser):
    """Takes the connection and returns: its start, its greenlet and its end."""
    name = "returns-at-once"
    ports = {80}
    signatures = (Signature(ORIG, b"GET "),)

    def main(self):
        self.confirm()


class ReadsEverything(Analyser):
    """Takes every chunk of both sides through read_any_into, parses none."""
    name = "reads-everything"
    ports = {80}
    signatures = (Signature(ORIG, b"GET "),)

    def main(self):
        self.confirm()
        self.read_any_into(lambda side, data: False)
