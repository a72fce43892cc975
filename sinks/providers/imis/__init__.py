"""iMIS (ASI REST API): settings, sink and fake."""
