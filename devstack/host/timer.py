"""Timer triggers: NCRONTAB (six fields, seconds first) or TimeSpan schedules.

Schedule status (Last/Next) is kept in the `azure-webjobs-hosts` blob container, as the
Azure host's schedule monitor does, so an occurrence missed while the host was down runs
on start-up with `past_due=True`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.timer import TimerRequest
from azure.storage.blob.aio import BlobServiceClient
from croniter import croniter

from devstack.host.index import FunctionSpec
from devstack.host.invocation import Invoker
from devstack.host.settings import AppSettings, parse_timespan

log = logging.getLogger("devstack.host")
HOSTS_CONTAINER = "azure-webjobs-hosts"


@dataclass(frozen=True)
class Schedule:
    expression: str

    def next_after(self, moment: datetime) -> datetime:
        if ":" in self.expression and len(self.expression.split()) == 1:
            interval = parse_timespan(self.expression)
            if interval <= timedelta(0):
                raise ValueError(f"timer interval must be positive: {self.expression!r}")
            return moment + interval
        fields = self.expression.split()
        if len(fields) != 6:
            raise ValueError(f"NCRONTAB needs six fields (seconds first): {self.expression!r}")
        return croniter(self.expression, moment, second_at_beginning=True).get_next(datetime)


@dataclass
class ScheduleStatus:
    last: datetime | None
    next: datetime
    last_updated: datetime

    def as_dict(self) -> dict[str, str]:
        return {"Last": (self.last or datetime.min.replace(tzinfo=UTC)).isoformat(),
                "Next": self.next.isoformat(), "LastUpdated": self.last_updated.isoformat()}

    @classmethod
    def from_dict(cls, document: dict[str, str]) -> ScheduleStatus:
        last = datetime.fromisoformat(document["Last"])
        return cls(last=None if last.year == 1 else last,
                   next=datetime.fromisoformat(document["Next"]),
                   last_updated=datetime.fromisoformat(document["LastUpdated"]))


class ScheduleMonitor(Protocol):
    async def read(self, function_name: str) -> ScheduleStatus | None: ...

    async def write(self, function_name: str, status: ScheduleStatus) -> None: ...


class MemoryScheduleMonitor:
    """For apps without AzureWebJobsStorage: past-due detection lasts one host run."""

    def __init__(self) -> None:
        self._status: dict[str, ScheduleStatus] = {}

    async def read(self, function_name: str) -> ScheduleStatus | None:
        return self._status.get(function_name)

    async def write(self, function_name: str, status: ScheduleStatus) -> None:
        self._status[function_name] = status


class BlobScheduleMonitor:
    """Status blobs at `azure-webjobs-hosts/timers/{hostId}/Host.Functions.{name}/status`."""

    def __init__(self, connection_string: str, host_id: str) -> None:
        self._connection_string = connection_string
        self._host_id = host_id

    def blob_name(self, function_name: str) -> str:
        return f"timers/{self._host_id}/Host.Functions.{function_name}/status"

    async def read(self, function_name: str) -> ScheduleStatus | None:
        async with BlobServiceClient.from_connection_string(self._connection_string) as service:
            blob = service.get_blob_client(HOSTS_CONTAINER, self.blob_name(function_name))
            try:
                downloaded = await blob.download_blob()
            except ResourceNotFoundError:
                return None
            return ScheduleStatus.from_dict(json.loads(await downloaded.readall()))

    async def write(self, function_name: str, status: ScheduleStatus) -> None:
        async with BlobServiceClient.from_connection_string(self._connection_string) as service:
            container = service.get_container_client(HOSTS_CONTAINER)
            with contextlib.suppress(ResourceExistsError):
                await container.create_container()
            await container.upload_blob(self.blob_name(function_name),
                                        json.dumps(status.as_dict()), overwrite=True)


def schedule_monitor(settings: AppSettings) -> ScheduleMonitor:
    storage = settings.get("AzureWebJobsStorage")
    if not storage:
        log.warning("AzureWebJobsStorage is not set: timer schedule status is kept in memory")
        return MemoryScheduleMonitor()
    host_id = settings.get("AzureFunctionsWebHost__hostid") or "devstack"
    return BlobScheduleMonitor(storage, host_id)


class TimerListener:
    """Fires one timer function on its schedule until stopped."""

    def __init__(self, spec: FunctionSpec, settings: AppSettings, invoker: Invoker,
                 monitor: ScheduleMonitor) -> None:
        self.spec = spec
        self._schedule = Schedule(settings.resolve(str(spec.trigger["schedule"])))
        self._run_on_startup = bool(spec.trigger.get("runOnStartup"))
        self._invoker = invoker
        self._monitor = monitor

    async def run(self) -> None:
        now = datetime.now(UTC)
        status = await self._monitor.read(self.spec.name)
        if status is not None and status.next < now:
            log.info("Function 'Functions.%s' is past due on startup. Executing now.",
                     self.spec.name)
            await self._fire(past_due=True, status=status, reason="This function was "
                             "triggered because it was past due on startup.")
        elif self._run_on_startup:
            await self._fire(past_due=False, status=status, reason="This function was "
                             "triggered because RunOnStartup is true.")
        while True:
            next_occurrence = self._schedule.next_after(datetime.now(UTC))
            status = await self._remember(next_occurrence, last=status.last if status else None)
            await asyncio.sleep(max(0.0, (next_occurrence - datetime.now(UTC)).total_seconds()))
            await self._fire(past_due=False, status=status,
                             reason=f"Timer fired at {next_occurrence.isoformat()}")
            status.last = next_occurrence

    async def _remember(self, next_occurrence: datetime, last: datetime | None) -> ScheduleStatus:
        status = ScheduleStatus(last=last, next=next_occurrence, last_updated=datetime.now(UTC))
        await self._monitor.write(self.spec.name, status)
        return status

    async def _fire(self, *, past_due: bool, status: ScheduleStatus | None, reason: str) -> None:
        request = TimerRequest(past_due=past_due,
                               schedule_status=status.as_dict() if status else {},
                               schedule={"AdjustForDST": True})
        try:
            await self._invoker.invoke(self.spec, request, reason=reason)
        except Exception:
            # The Executed line already logged it; a timer keeps its schedule after a failure.
            return
