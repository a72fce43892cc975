"""Personify360 (Personify Data Services): settings, sink and fake."""
