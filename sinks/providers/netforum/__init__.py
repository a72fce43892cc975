"""netFORUM Enterprise (xWeb SOAP 1.1): settings, sink and fake."""
