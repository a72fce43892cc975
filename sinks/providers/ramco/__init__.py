"""RAMCO AMS (API v2): settings, sink and fake."""
