"""A real-time passive protocol analyser framework.

The compiled engine (ringbuf/, analyser/decode, flows, streams, engine) turns
packets into connection records and per-side byte streams; analysers written
as straight-line Python (`Analyser`) read those streams with blocking calls.

Public API::

    from analyser import (Analyser, ORIG, RESP, ANY, Gap, StreamEnd, Monitor,
                          Signature, Field, conn_id_fields, TRANSFERS, Expectation, InnerStreams,
                          ProtocolViolation, private_address, AnalyserCore,
                          deferred_import, deferred_module, SlotRecord)

`AnalyserCore` is Analyser's per-connection half (state and reads, no
declarations): a protocol whose hot path is worth an extension type derives
its typed half from it and its analyser from both (protocols/ftp.py, whose
ftp.pxd cimports it from analyser.runtime).
"""
__version__ = "0.2.0"

# Before any compiled-from-Python module loads: a source edited since the
# build runs as source rather than its stale compiled form.
from analyser.compiled import install as _install_fresh_source_finder  # noqa: E402
_install_fresh_source_finder()

from analyser.runtime import (ANY, DETECTION_BUFFER, ORIG, RESP, Analyser,  # noqa: E402
                              AnalyserCore, Expectation, Gap, ProtocolViolation, StreamEnd)
from analyser.events import Monitor  # noqa: E402
from analyser.schemas import TRANSFERS, Field, conn_id_fields  # noqa: E402
from analyser.signatures import Signature  # noqa: E402
from analyser.inner import InnerStreams  # noqa: E402
from analyser.flows import private_address  # noqa: E402
from analyser.deferred import deferred_import, deferred_module  # noqa: E402
from analyser.records import SlotRecord  # noqa: E402

__all__ = ["Analyser", "ORIG", "RESP", "ANY", "Gap", "StreamEnd", "Monitor", "Signature",
           "Field", "conn_id_fields", "TRANSFERS", "Expectation", "ProtocolViolation",
           "InnerStreams", "private_address", "AnalyserCore", "DETECTION_BUFFER",
           "deferred_import", "deferred_module", "SlotRecord", "__version__"]
