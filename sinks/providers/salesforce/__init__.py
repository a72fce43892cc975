"""Salesforce (and Fonteva, Nimble AMS): idempotent upsert through sObject Collections."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "salesforce",
    ("Salesforce (Fonteva, Nimble AMS): idempotent upsert through sObject Collections, 200 a call, OAuth "
     "client credentials or JWT bearer"),
    settings=".settings:SalesforceSettings",
    sink=".sink:SalesforceSink",
    fake=FakeSpec(".fake", "fake Salesforce", "http://127.0.0.1:8086", "ACTIVITY_SYNC_SALESFORCE_SECRET"),
    extra="salesforce",
    bench=(BenchCase("sObject Collections upsert, 200 a call"),),
)
