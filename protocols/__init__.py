"""Protocol analysers, one module per protocol (ftp, gridftp, ...).

Role in the data flow: analysers sit after reassembly; each reads a
connection's two byte streams and emits application events.
"""
