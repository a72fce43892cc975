"""Aptify (Services API): settings, sink and fake."""
