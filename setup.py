"""Build the compiled hot path (Cython) and declare the dependencies.

The hot path is a handful of Cython modules; each has a .pxd so that the others
call it at C speed.  `CYTHON_ANNOTATE=1 pip install -e .` writes the annotated
HTML next to each module for profiling; `ANALYSER_DEBUG=1` builds with -O0 -g.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("ANALYSER_DEBUG") == "1"
compile_args = ["-O0", "-g"] if debug else ["-O3", "-fno-strict-aliasing"]

MODULES = [
    ("ringbuf.ring", []),
    ("ringbuf.source", []),
    ("ringbuf.pcapfile", []),
    ("analyser.decode", []),
    ("analyser.streams", []),
    ("analyser.binding", []),
    ("analyser.flows", []),
    ("analyser.engine", []),
    ("analyser.logformat", []),
    ("analyser.pcapout", []),
    ("ringbuf.bpf", ["pcap"]),
    ("ringbuf.livepcap", ["pcap"]),
    ("ringbuf.afpacket", ["pcap"]),
]

# A protocol module's own compiled helpers (protocols/_*.pyx: not analysers).
MODULES += [("protocols." + os.path.basename(path)[:-4], [])
            for path in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "protocols", "_*.pyx")))]

extensions = [
    Extension(name, [name.replace(".", "/") + ".pyx"], libraries=libs,
              extra_compile_args=compile_args)
    for name, libs in MODULES
]
# The protocol modules and the runtime's Python modules stay plain Python and
# are also compiled as they are (analyser/compiled.py says which, and what
# happens when a source is edited after the build).
_compiled = {}
exec(open(os.path.join("analyser", "compiled.py")).read(), _compiled)
from_python = [
    Extension(name, [name.replace(".", "/") + ".py"], extra_compile_args=compile_args)
    for name in _compiled["compiled_sources"](os.path.dirname(os.path.abspath(__file__)))
]

setup(
    name="analyser",
    version="0.2.0",
    description="Real-time passive protocol analyser framework (compiled flow engine, "
                "protothread analysers, Zeek-compatible logs)",
    packages=["analyser", "ringbuf", "protocols"],
    package_data={"analyser": ["*.pxd"], "ringbuf": ["*.pxd"], "protocols": ["*.pxd"]},
    ext_modules=cythonize(
        extensions,
        nthreads=os.cpu_count() or 1,
        language_level=3,
        annotate=os.environ.get("CYTHON_ANNOTATE") == "1",
        compiler_directives={"boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False},
    ) + cythonize(
        # Python's semantics kept whole: negative indices, bounds, division,
        # and type hints that stay hints (Cython would make `x: bytes` refuse
        # a bytearray).
        from_python,
        nthreads=os.cpu_count() or 1,
        language_level=3,
        annotate=os.environ.get("CYTHON_ANNOTATE") == "1",
        compiler_directives={"annotation_typing": False},
    ),
    python_requires=">=3.11",
    install_requires=[
        "dpkt>=1.9",
        "greenlet>=3.0",
        "prometheus-client>=0.17",
        "redis>=4.2",
        # QUIC: Initial packets are decrypted (AES-128-GCM, header protection)
        # to read the TLS handshake they carry.
        "cryptography>=41",
    ],
    extras_require={"test": ["pytest>=7", "pyftpdlib>=1.5", "hypothesis>=6"],
                    # `make fuzz`: coverage-guided fuzzing (fuzz/README.md)
                    "fuzz": ["atheris>=2.3"]},
    entry_points={"console_scripts": ["analyser=analyser.cli:main"]},
)
