"""The batch hunt feeding the live defence: `scan` results as watch/degrade/block lists.

``accounts.parquet`` and ``campaigns.parquet`` from ``scan --out DIR`` are read at start
and again whenever their modification time changes (polled, so it works on any file
system); a half-written or broken file keeps the previous lists in force.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

log = logging.getLogger("distillguard.gateway")


@dataclass(frozen=True)
class Listing:
    score: float
    flagged: bool
    campaign_id: str | None


@dataclass(frozen=True)
class ScanLists:
    accounts: dict[str, Listing] = field(default_factory=dict)
    campaign_scores: dict[str, float] = field(default_factory=dict)
    version: int = 0

    def get(self, account: str) -> Listing | None:
        return self.accounts.get(account)


def read_scan_dir(directory: Path, version: int = 0) -> ScanLists:
    """Flagged accounts and campaign members; accounts neither flagged nor linked are left out."""
    accounts: dict[str, Listing] = {}
    campaign_scores: dict[str, float] = {}
    camp_path = directory / "campaigns.parquet"
    if camp_path.exists():
        camps = pq.read_table(camp_path).to_pylist()
        for c in camps:
            cid = c.get("campaign_id")
            if cid is None:
                continue
            score = float(c.get("score") or 0.0)
            campaign_scores[str(cid)] = score
            for acc in c.get("account_ids") or []:
                accounts[str(acc)] = Listing(score, True, str(cid))
    acc_path = directory / "accounts.parquet"
    if acc_path.exists():
        cols = ["account_id", "score", "flagged", "campaign_id"]
        table = pq.read_table(acc_path, columns=cols).to_pydict()
        for acc, score, flagged, cid in zip(*(table[c] for c in cols), strict=True):
            if not flagged and cid is None:
                continue
            prior = accounts.get(str(acc))
            camp = str(cid) if cid is not None else (prior.campaign_id if prior else None)
            accounts[str(acc)] = Listing(
                max(float(score or 0.0), prior.score if prior else 0.0), bool(flagged), camp
            )
    return ScanLists(accounts, campaign_scores, version)


class ListWatcher:
    """Holds the current lists and swaps in new ones when the scan files change."""

    FILES = ("accounts.parquet", "campaigns.parquet")

    def __init__(self, directory: Path | None, poll_s: float) -> None:
        self.directory = directory
        self.poll_s = poll_s
        self.lists = ScanLists()
        self._stamp: tuple[float, ...] = ()
        self.reloads = 0
        self.errors = 0

    def _mtimes(self) -> tuple[float, ...]:
        assert self.directory is not None
        out = []
        for name in self.FILES:
            try:
                st = (self.directory / name).stat()
                out += [st.st_mtime_ns, st.st_size]
            except FileNotFoundError:
                out += [0, 0]
        return tuple(out)

    def check(self) -> bool:
        """Reload if the files changed; True when new lists are in force."""
        if self.directory is None:
            return False
        stamp = self._mtimes()
        if stamp == self._stamp:
            return False
        try:
            lists = read_scan_dir(self.directory, self.lists.version + 1)
        except Exception as err:  # a file being rewritten: keep the lists we have
            self.errors += 1
            log.warning("scan lists: cannot read %s: %s", self.directory, err)
            return False
        self._stamp = stamp
        self.lists = lists
        self.reloads += 1
        log.info("scan lists: %d accounts listed (v%d)", len(lists.accounts), lists.version)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await asyncio.to_thread(self.check)
