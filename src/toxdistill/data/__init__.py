"""Data: read and clean the file (``dataset``), then make the one split every model shares (``split``)."""
