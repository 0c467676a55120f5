"""``python -m daskval``: the same as the ``daskval`` command."""

from __future__ import annotations

from daskval.cli import main

# the guard matters: worker processes start with spawn and re-import __main__
if __name__ == "__main__":
    raise SystemExit(main())
