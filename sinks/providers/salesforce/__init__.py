"""Salesforce (and Fonteva, Nimble AMS): idempotent upsert through sObject Collections."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "salesforce",
    ("Salesforce (Fonteva, Nimble AMS): idempotent upsert through sObject Collections, 200 a call, OAuth "
     "client credentials or JWT bearer"),
    settings=".settings:SalesforceSettings",
    sink=".sink:SalesforceSink",
    # the demo org holds the seed's members as Contacts with a member number (Member_Number__c)
    fake=FakeSpec(".fake", "fake Salesforce", "http://127.0.0.1:8086", "ACTIVITY_SYNC_SALESFORCE_SECRET",
                  args=("--contacts", "Member_Number__c=aquill,0037yHT1MAAW,clindqvist,0037000000uwuhgAAA")),
    extra="salesforce",
    bench=(BenchCase("sObject Collections upsert, 200 a call"),),
)
