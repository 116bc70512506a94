"""Protocol analysers, one module per protocol (ftp, gridftp, ...).

Role in the data flow: analysers sit after reassembly; each reads a
connection's two byte streams and emits application events.
"""

import analyser  # noqa: E402,F401  (its finder picks a source edited since `make build`)
