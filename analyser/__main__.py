"""`python -m analyser` is the `analyser` command."""
from analyser.cli import main

raise SystemExit(main())
