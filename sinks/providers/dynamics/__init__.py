"""Microsoft Dynamics 365 / Dataverse (and Cobalt): activities upserted by alternate key."""
