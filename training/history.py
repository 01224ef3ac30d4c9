"""Load the card store the service reads (`SPROXXO_HISTORY_URL`): profiles and history.

    python -m training.history profiles --source file --path data/cards.csv
    python -m training.history warm --source bigquery --table p.d.tx --since ... --until ...
    python -m training.history forget --idle-days 400

`profiles` writes each card's profile (home, city population, holder's age, issue date:
the fields a real authorisation does not carry); `warm` replays the last 7 days of the
data into the cards' history, so a new store does not start every card as new; `forget`
deletes cards idle that long from a SQLite store (Redis keys expire by themselves).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sproxxo.jobs.cardstore import forget_idle, load_profiles, warm
from sproxxo.jobs.cli import add_source_args, configure_logging, data_spec, run
from sproxxo.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Load profiles or warm the history; print what was written."""
    p = argparse.ArgumentParser(prog="python -m training.history", description=__doc__)
    p.add_argument("command", choices=["profiles", "warm", "forget"])
    p.add_argument("--days", type=float, default=7.0, help="warm: days of history to replay")
    p.add_argument("--idle-days", type=float, default=400.0, help="forget: idle for this long")
    add_source_args(p)
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    if args.command == "forget":
        print(f"forget: {forget_idle(settings, idle_days=args.idle_days)} cards")
        return 0
    if args.command == "profiles":
        done = load_profiles(data_spec(args), settings)
    else:
        done = warm(data_spec(args), settings, days=args.days)
    print(f"{args.command}: {done.cards} cards from {done.rows} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
