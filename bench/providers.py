"""``make bench`` for the AMS/CRM providers: each provider's sink, through the real delivery runner,
against its fake running as its own process with a 20 ms response time, in the provider's real
batch size; and the Dataverse request budget kept while the fake enforces it.

No Kafka here: the Kafka side of a sink worker is the same for every provider and is measured by
the delivery-stage figures; this isolates what differs (mapping, the vendor's wire format, auth).

    python -m bench --only providers
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from activity_sync.devtools.broker import free_port
from sinks.contract import SinkContext
from core.config import read_config_file
from sinks.registry import PROVIDERS, example_config, parse_settings, sink_class
from sinks.runner import DeliveryRunner, Pending, RetryPolicy
from activity_sync.devtools.sink_testing import Recorder, sample_deliveries

SECRET = "bench-secret-" + os.urandom(6).hex()
URL_SETTINGS = ("url", "login_url", "authority_host", "site_url", "oauth_endpoint", "dsn")


def secret_env() -> dict[str, str]:
    """Every declared fake's credential (and what is made from it), the same made-up one for both sides."""
    env = {}
    for p in PROVIDERS.values():
        if p.fake is not None:
            env[p.fake.secret_env] = SECRET
            env.update({name: template.format(secret=SECRET) for name, template in p.fake.env})
    return env


class Fake:
    def __init__(self, module: str, args: list[str], https: bool, tmp: Path) -> None:
        self.port = free_port()
        self.ca = tmp / f"ca-{self.port}.pem"
        cmd = [sys.executable, "-m", module, "--port", str(self.port), *(a.format(ca_file=self.ca) for a in args)]
        if https and not any("{ca_file}" in a for a in args):
            cmd += ["--ca-file", str(self.ca)]
        env = dict(os.environ, **secret_env())
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"{'https' if https else 'http'}://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stats(self) -> dict:
        ctx = None
        if self.url.startswith("https"):
            ctx = ssl.create_default_context(cafile=str(self.ca)) if self.ca.exists() else None
            if ctx is None:
                raise OSError("no CA yet")
        return json.loads(urllib.request.urlopen(f"{self.url}/_stats", timeout=5, context=ctx).read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def run_sink(provider: str, settings: dict, n: int, env: dict, policy: RetryPolicy | None = None,
                   members: int = 5000) -> dict:
    os.environ.update(env)
    s = parse_settings(provider, settings)
    sink = sink_class(provider)()
    statuses: list = []
    await sink.start(SinkContext("bench", s, statuses.append))
    deliveries = sample_deliveries(n, endpoint="bench", customer=lambda i: f"member-{i % members}")
    pub = Recorder()
    runner = DeliveryRunner.for_endpoint("bench", sink, pub, s, policy=policy or RetryPolicy(inline_attempts=2))
    if hasattr(sink, "token"):
        await sink.token()  # the first token is start-up, not throughput
    t0 = time.monotonic()
    try:
        await runner.deliver([Pending(d, b"k", b"v", ("t", 0, i)) for i, d in enumerate(deliveries)])
    finally:
        took = time.monotonic() - t0
        await sink.stop()
    return {"seconds": took, "records_per_s": n / took, "statuses": statuses, "retried": len(pub.retries),
            "dead": len(pub.deads)}


def declared_cases(only: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()):
    """``(provider, case, settings for a fake at URL)`` for every declared provider with a fake and an
    example config: the example's endpoint of that provider, pointed at the fake, changed by the case."""
    for name, p in PROVIDERS.items():
        example = example_config(name) if p.fake is not None else None
        if example is None or name in skip or (only is not None and name not in only):
            continue
        raw = next(e for e in read_config_file(example)["endpoints"] if e.get("provider") == name)["settings"]
        for case in p.bench:
            def settings(url: str, ca: Path, raw=raw, case=case, address=p.fake.address) -> dict:
                s = {k: v for k, v in raw.items() if not case.replace or k in URL_SETTINGS}
                for k in URL_SETTINGS:
                    if isinstance(s.get(k), str) and s[k].startswith(address):
                        s[k] = url + s[k][len(address):]
                if "ca_file" in s:
                    s["ca_file"] = str(ca)
                return {**s, **case.settings}
            yield p, case, settings


async def bench_declared(n: int, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> list[dict]:
    """Each declared provider's bench cases against its fake (20 ms a response), one line each."""
    tmp = Path(tempfile.mkdtemp(prefix="activity-sync-bench-declared-"))
    out = []
    for p, case, settings in declared_cases(only, skip):
        fake = Fake(p.resolve(p.fake.module), ["--latency-ms", "20", *p.fake.args, *case.fake_args],
                    p.fake.scheme == "https", tmp)
        try:
            r = await run_sink(p.name, settings(fake.url, fake.ca), n, secret_env(), members=case.members)
            st = fake.stats()
            print(f"  {p.name + ': ' + case.what:78} {r['records_per_s']:8,.0f} records/s ({st['stored']} stored of "
                  f"{n} in {r['seconds']:.1f}s, {st['requests']} write requests)", flush=True)
            out.append({"provider": p.name, "case": case.what, **r, "stored": st["stored"]})
        finally:
            fake.stop()
    return out


async def bench_ams_providers(n: int = 2_000) -> None:
    """The AMS providers, each against its fake in its own process answering in 20 ms, with their
    default batch size and concurrency (as their declarations say); PostgreSQL: rows/s into a real server."""
    await bench_declared(n, skip=("webhook", "salesforce", "dynamics"))
    from activity_sync.devtools.postgres import LocalPostgres

    print("\n== PostgreSQL activity table: batched upsert into a real server (Debian's package) ==", flush=True)
    with LocalPostgres() as pg:
        for batch, rows in ((1000, 100_000), (100, 20_000)):
            r = await run_sink("postgresql", {"dsn": pg.dsn, "password_env": "BENCH_PG", "table": f"bench_{batch}",
                                              "batch_size": batch}, rows, {"BENCH_PG": pg.password})
            print(f"  {'postgresql: upsert of ' + str(batch) + ' rows a statement, ' + str(rows) + ' rows':78} "
                  f"{r['records_per_s']:8,.0f} rows/s ({r['seconds']:.1f}s)", flush=True)
        r = await run_sink("postgresql", {"dsn": pg.dsn, "password_env": "BENCH_PG", "table": "bench_1000",
                                          "batch_size": 1000}, 100_000, {"BENCH_PG": pg.password})
        print(f"  {'postgresql: the same 100,000 again (every row an update: redelivery)':78} "
              f"{r['records_per_s']:8,.0f} rows/s ({r['seconds']:.1f}s)", flush=True)


async def bench_providers(n: int = 20_000) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="activity-sync-bench-providers-"))
    print("\n== AMS/CRM providers: sink + runner -> fake API in its own process, 20 ms a response ==", flush=True)
    members = ",".join(f"member-{i}" for i in range(5000))  # run_sink's members, Contacts by member number
    sf = Fake("sinks.providers.salesforce.fake", ["--latency-ms", "20", "--client-id", "bench",
                                                  "--contacts", f"Member_Number__c={members}"], False, tmp)
    try:
        r = await run_sink("salesforce", {"login_url": sf.url, "client_id": "bench",
                                          "client_secret_env": "BENCH_SECRET", "batch_size": 200,
                                          "contact_match": "external_id",
                                          "contact_external_id_field": "Member_Number__c"},
                           n, {"BENCH_SECRET": SECRET})
        st = sf.stats()
        print(f"  {'salesforce: sObject Collections upsert, 200 a call':68} {r['records_per_s']:8,.0f} records/s "
              f"({st['stored']} stored of {n} in {r['seconds']:.1f}s, {st['requests']} requests)", flush=True)
    finally:
        sf.stop()
    results = {}
    for mode, batch in (("upsert_multiple", 1000), ("batch", 1000)):
        dv = Fake("sinks.providers.dynamics.fake", ["--latency-ms", "20", "--tenant", "bench", "--client-id", "bench",
                                                    "--limit-requests", "100000000"], True, tmp)
        try:
            r = await run_sink("dynamics", {"url": dv.url, "authority_host": dv.url, "tenant_id": "bench",
                                            "client_id": "bench", "client_secret_env": "BENCH_SECRET",
                                            "ca_file": str(dv.ca), "contact_bind": "/contacts(new_customerid="
                                                                                   "'{customer_id}')",
                                            "write_mode": mode, "batch_size": batch, "rate_window": None, "timeout_s": 60},
                               n, {"BENCH_SECRET": SECRET})
            st = dv.stats()
            results[mode] = r["records_per_s"]
            what = "UpsertMultiple" if mode == "upsert_multiple" else "$batch of PATCH upserts, continue-on-error"
            print(f"  {'dynamics: ' + what + ', ' + str(batch) + ' a call':68} {r['records_per_s']:8,.0f} "
                  f"records/s ({st['stored']} stored of {n} in {r['seconds']:.1f}s, {st['requests']} requests)",
                  flush=True)
        finally:
            dv.stop()
    per_window = 5800
    print(f"  dynamics modes side by side: upsert_multiple / batch = {results['upsert_multiple'] / results['batch']:.2f}"
          f"; under the service-protection budget ({per_window} requests / 300 s) the ceilings are "
          f"{per_window * 1000 / 300:,.0f} records/s (UpsertMultiple: 1 request a batch) vs "
          f"{per_window / 300:,.0f} records/s ($batch: each part counts)", flush=True)

    print("\n== Dataverse service protection: the fake enforces 60 requests / 5 s (429 + Retry-After beyond) ==",
          flush=True)
    for label, window in (("with the runner's request budget (60 / 5 s)", {"requests": 60, "seconds": 5}),
                          ("without a client-side budget (for contrast)", None)):
        dv = Fake("sinks.providers.dynamics.fake", ["--tenant", "bench", "--client-id", "bench",
                                                    "--limit-requests", "60", "--limit-window-s", "5"], True, tmp)
        try:
            r = await run_sink("dynamics", {"url": dv.url, "authority_host": dv.url, "tenant_id": "bench",
                                            "client_id": "bench", "client_secret_env": "BENCH_SECRET",
                                            "ca_file": str(dv.ca), "contact_bind": "/contacts(new_customerid="
                                                                                   "'{customer_id}')",
                                            "batch_size": 10, "rate_window": window}, 1800, {"BENCH_SECRET": SECRET},
                               policy=RetryPolicy(inline_attempts=10, max_inline_wait_s=10))
            st = dv.stats()
            print(f"  {label:46} {st['requests']:4} requests, {st['throttled']:3} answered 429, "
                  f"{st['early_requests']} sent during a Retry-After; {st['stored']}/1800 stored in "
                  f"{r['seconds']:.1f}s", flush=True)
        finally:
            dv.stop()
