"""``python -m nons.observability.dashboards [DIR]``: write the dashboards' JSON into DIR (default ``dashboards``)."""

from __future__ import annotations

import sys
from pathlib import Path

from nons.observability.dashboards import write_dashboards

if __name__ == "__main__":  # pragma: no cover - a convenience entry point; `nons dashboards` is tested
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("dashboards")
    for written_path in write_dashboards(target):
        print(written_path)
