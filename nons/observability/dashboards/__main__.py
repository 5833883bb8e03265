"""``python -m nons.observability.dashboards [DIR]``: write the dashboards' JSON into DIR (default ``dashboards``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nons.observability.dashboards import write_dashboards


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m nons.observability.dashboards", description="Write the Grafana dashboards as JSON."
    )
    parser.add_argument("directory", nargs="?", default="dashboards", help="directory to write (default: dashboards)")
    args = parser.parse_args(argv)
    for written_path in write_dashboards(Path(args.directory)):
        print(written_path)


if __name__ == "__main__":
    main()
