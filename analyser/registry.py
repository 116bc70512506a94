"""Finding analysers: the built-in ones in protocols/, modules or files given
with --load, and installed packages' entry points (group "analyser.analysers").

Role in the data flow: configuration, before any packet.  An analyser is any
subclass of analyser.Analyser with a `name`; a loaded module may also define
`monitor(m)` to register event callbacks on an analyser.events.Monitor.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys

from analyser.runtime import Analyser

ENTRY_POINT_GROUP = "analyser.analysers"


class AnalyserConfigError(ValueError):
    """A bad --analyser/--no-analyser/--load: one line for the user."""


def analysers_in(module) -> list[type[Analyser]]:
    found = []
    # (sorted by name, as inspect.getmembers did: inspect costs start-up 5 ms)
    for _, obj in sorted(vars(module).items()):
        if (isinstance(obj, type) and issubclass(obj, Analyser) and obj is not Analyser
                and obj.name and obj.__module__ == module.__name__):
            found.append(obj)
    return found


def module_names(directory: str) -> list[str]:
    """The modules and packages in `directory`, by name, sorted (what
    pkgutil.iter_modules finds there; pkgutil itself imports typing, 2 ms of
    every start-up)."""
    suffixes = sorted(importlib.machinery.all_suffixes(), key=len, reverse=True)
    names = set()
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    for entry in entries:
        path = os.path.join(directory, entry)
        if os.path.isdir(path):
            if entry.isidentifier() and any(
                    os.path.exists(os.path.join(path, "__init__" + s)) for s in suffixes):
                names.add(entry)
            continue
        for suffix in suffixes:
            if entry.endswith(suffix):
                name = entry[:-len(suffix)]
                if name.isidentifier() and name != "__init__":
                    names.add(name)
                break
    return sorted(names)


def builtin_modules() -> list:
    import protocols
    mods = []
    seen = set()
    for directory in protocols.__path__:
        for name in module_names(directory):
            if not name.startswith("_") and name not in seen:
                seen.add(name)
                mods.append(importlib.import_module("protocols." + name))
    return mods


def load_module(spec: str):
    """Import a module by dotted name, or a Python file by path."""
    try:
        if spec.endswith(".py") or os.sep in spec:
            if not os.path.exists(spec):
                raise AnalyserConfigError("cannot load %r: no such file" % spec)
            import importlib.util         # only for --load of a file
            name = "analyser_loaded_" + os.path.splitext(os.path.basename(spec))[0]
            loader_spec = importlib.util.spec_from_file_location(name, spec)
            if loader_spec is None or loader_spec.loader is None:
                raise AnalyserConfigError("cannot load %r: not a Python file" % spec)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
            return module
        return importlib.import_module(spec)
    except AnalyserConfigError:
        raise
    except SyntaxError as exc:
        raise AnalyserConfigError("cannot load %r: %s (line %s)" % (spec, exc.msg, exc.lineno))
    except Exception as exc:
        raise AnalyserConfigError("cannot load %r: %s: %s" % (spec, type(exc).__name__, exc))


def entry_point_modules() -> list:
    return [module for module, _ in entry_point_sources()]


def may_declare_entry_points(paths: list[str] | None = None) -> bool:
    """Whether an installed distribution may declare ENTRY_POINT_GROUP: a
    look at the entry_points.txt files of the directories on sys.path.
    importlib.metadata, which reads them properly, costs every start-up
    about 15 ms to import, and most installations declare none.  Anything
    this look cannot see through (a zip or an egg on the path) counts as
    a maybe."""
    for entry in sys.path if paths is None else paths:
        path = entry or "."
        if entry.endswith(".egg") or (os.path.exists(path) and not os.path.isdir(path)):
            return True
        try:
            names = os.listdir(path)
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(path, name, "entry_points.txt"), encoding="utf-8",
                          errors="replace") as f:
                    if ENTRY_POINT_GROUP in f.read():
                        return True
            except OSError:
                continue
    return False


def entry_point_sources() -> list[tuple]:
    """(module, origin) of each installed package's entry point."""
    mods = []
    if not may_declare_entry_points():
        return mods
    from importlib import metadata
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            print("analyser: warning: entry point %s cannot be loaded: %s" % (ep.name, exc),
                  file=sys.stderr)
            continue
        dist = getattr(ep, "dist", None)
        package = "%s %s" % (dist.name, dist.version) if dist is not None else "?"
        origin = "package %s (entry point %s = %s)" % (package, ep.name, ep.value)
        mods.append((sys.modules.get(obj.__module__) if isinstance(obj, type) else obj, origin))
    return mods


def module_file(module) -> str:
    """A module's file, relative to the working directory when inside it."""
    path = getattr(module, "__file__", None) or module.__name__
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def sources(load: list[str] = (), builtins: bool = True) -> list[tuple]:
    """(module, origin) of every analyser module, in the order select() reads
    them (a later analyser of the same name replaces an earlier one)."""
    found = []
    if builtins:
        import protocols
        base = os.path.dirname(os.path.dirname(os.path.abspath(protocols.__file__)))
        for m in builtin_modules():
            # The source a user reads, also when the build compiled it
            # (analyser/compiled.py).
            source = os.path.join(os.path.dirname(m.__file__),
                                  m.__name__.rpartition(".")[2] + ".py")
            found.append((m, "built-in module %s" % os.path.relpath(source, base)))
    found += entry_point_sources()
    for spec in load:
        m = load_module(spec)
        found.append((m, "--load %s" % module_file(m) if spec.endswith(".py") or os.sep in spec
                      else "--load %s (%s)" % (spec, module_file(m))))
    return found


def catalogue(load: list[str] = ()) -> list[tuple]:
    """[(class, origin)] of the analysers a run would know, by name; an origin
    says which earlier one it replaces."""
    known: dict[str, tuple] = {}
    for module, origin in sources(load):
        for cls in analysers_in(module):
            if cls.name in known:
                origin = "%s, replacing the one from %s" % (origin, known[cls.name][1])
            known[cls.name] = (cls, origin)
    return [known[name] for name in sorted(known)]


def parse_config(cls: type[Analyser], text: str) -> dict:
    """'ports=21,2121,key=value' -> {'ports': [21, 2121], 'key': value}."""
    config: dict = {}
    if not text:
        return config
    key = None
    for part in text.split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            key = key.strip()
            if key == "ports":
                config["ports"] = []
            elif key not in cls.options:
                known = ", ".join(["ports"] + sorted(cls.options)) or "ports"
                raise AnalyserConfigError("analyser %s has no option %r (options: %s)" % (
                    cls.name, key, known))
        elif key == "ports":
            value = part
        else:
            raise AnalyserConfigError("bad analyser option %r: expected key=value" % part)
        if key == "ports":
            try:
                port = int(value)
            except ValueError:
                raise AnalyserConfigError("analyser %s: bad port %r" % (cls.name, value)) from None
            if not 0 < port < 65536:
                raise AnalyserConfigError("analyser %s: bad port %r" % (cls.name, value))
            config["ports"].append(port)
            continue
        default = cls.options[key][0]
        try:
            if isinstance(default, bool):
                config[key] = value.lower() in ("1", "true", "yes", "on")
            elif isinstance(default, (int, float)):
                config[key] = type(default)(value)
            else:
                config[key] = value
        except ValueError:
            raise AnalyserConfigError("analyser %s: option %s wants a %s, not %r" % (
                cls.name, key, type(default).__name__, value)) from None
    return config


def select(load: list[str] = (), enable: list[str] = (), disable: list[str] = (),
           builtins: bool = True):
    """Returns ([(cls, config)], [monitor hooks]) as the options ask."""
    if builtins and not enable and set(disable) == {"all"}:
        # `--no-analyser all` alone (connection records): no built-in module
        # can be chosen, and importing them all is most of a start-up.
        builtins = False
    modules = (builtin_modules() if builtins else []) + entry_point_modules()
    modules += [load_module(spec) for spec in load]
    known: dict[str, type[Analyser]] = {}
    hooks = []
    for m in modules:
        for cls in analysers_in(m):
            known[cls.name] = cls
        hook = getattr(m, "monitor", None)
        if callable(hook):
            hooks.append(hook)
    configs: dict[str, dict] = {}
    for item in enable:
        name, _, opts = item.partition(":")
        if name not in known:
            raise AnalyserConfigError("unknown analyser %r (known: %s)" % (
                name, ", ".join(sorted(known)) or "none"))
        configs[name] = parse_config(known[name], opts)
    disabled = set()
    for name in disable:
        if name == "all":
            disabled |= set(known) - set(configs)
        elif name not in known:
            raise AnalyserConfigError("unknown analyser %r (known: %s)" % (
                name, ", ".join(sorted(known)) or "none"))
        else:
            disabled.add(name)
    chosen = []
    for name, cls in sorted(known.items()):
        if name in disabled:
            continue
        config = configs.get(name, {})
        for key, (default, _) in cls.options.items():
            config.setdefault(key, default)
        chosen.append((cls, config))
    return chosen, hooks


def readable_signature(sig) -> str:
    """`resp starts "SSH-" (any case)`: a Signature as a reader says it."""
    text = "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else "\\x%02x" % b
                   for b in bytes(sig.pattern))
    notes = [note for flag, note in ((sig.nocase, "any case"),
                                     (sig.skip_space, "after leading spaces"),
                                     (sig.wildcard, "? = any byte")) if flag]
    return '%s starts "%s"%s' % ("orig" if sig.side == 0 else "resp", text,
                                 " (%s)" % ", ".join(notes) if notes else "")


def summary_line(cls: type[Analyser]) -> str:
    """The first paragraph of the class's own docstring (not a base's), as one line."""
    import inspect
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "").split("\n\n")[0]
    return " ".join(doc.split())


def describe(cls: type[Analyser], origin: str | None = None) -> str:
    """The analyser's entry in `analyser list-analysers`: where it comes from,
    how it is chosen, what it logs, its options."""
    summary = summary_line(cls)
    lines = ["%s: %s" % (cls.name, summary) if summary else cls.name]
    if origin:
        lines.append("    from:      %s" % origin)
    protocol = cls.protocol if isinstance(cls.protocol, str) else "/".join(cls.protocol)
    lines.append("    transport: %s" % protocol)
    if cls.ports:
        lines.append("    ports:     %s (hints; --analyser %s:ports=N,M sets them)"
                     % (",".join(str(p) for p in sorted(cls.ports)), cls.name))
    for sig in cls.signatures:
        lines.append("    signature: %s" % readable_signature(sig))
    if not cls.ports and not cls.signatures:
        lines.append("    chosen:    only for connections another analyser expects")
    for path, fields in sorted(cls.declared_logs.items()):
        lines.append("    log %s.log: %s" % (path, " ".join(f.name for f in fields)))
    for key, (default, help_text) in sorted(cls.options.items()):
        lines.append("    option %s=%r: %s" % (key, default, help_text))
    return "\n".join(lines)
