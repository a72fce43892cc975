"""What both pollers of the Action Network ↔ Mobile Commons sync share: their output is change records
on ``anmc.changes`` (not raw activities), keyed by mobile number, and each run ends with a summary
line on ``anmc.report`` (a run that read nothing new says so: "no new changes")."""

from __future__ import annotations

from typing import ClassVar

from .framework import BadRecord, PollingSource


class SyncChangeSource(PollingSource):
    side: ClassVar[str] = ""      # "action_network" | "mobile_commons"
    ordered = False               # neither collection comes in update order

    def number(self, record: dict) -> str | None:
        raise NotImplementedError

    async def activities(self, records: list[dict]) -> list:
        out = []
        for r in records:
            pos = self.position(r)
            if pos is None:
                out.append(BadRecord("MissingField", f"a {self.side} record without an id or an update time"))
                continue
            key = self.number(r) or f"{self.side}:{pos[1]}"
            out.append({"source": self.source.name, "side": self.side, "run": self.run, "when": pos[0],
                        "key": key, "record": r})
        return out

    def destination(self, topics) -> str:
        return topics.anmc_changes

    def key_of(self, item: dict) -> bytes:
        return item["key"].encode()

    def poll_report(self, run: str, records: int, produced: int):
        return ("anmc_report", {"source": self.source.name, "side": self.side, "run": run,
                                "records": records, "changes": produced, "summary": True})
