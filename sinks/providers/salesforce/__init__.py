"""Salesforce (and Fonteva, Nimble AMS): idempotent upsert through sObject Collections."""
